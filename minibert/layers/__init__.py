"""The layers of BERT, each a pair ``out, cache = X_forward(...)`` / ``grads = X_backward(dout, cache)``
in readable NumPy.  These are the references: the numba twins in ``minibert.kernels`` must agree.
They are also the classroom exercises: ``minibert exercises make`` takes out the code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (see ``minibert/classroom/exercises.py``)."""
from .adamw import adamw_update
from .attention import (attention_backward, attention_forward, merge_heads, sdpa_backward,
                        sdpa_forward, split_heads)
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .encoder_layer import EncoderLayerCache, encoder_layer_backward, encoder_layer_forward
from .ffn import ffn_backward, ffn_forward
from .gelu import (ACTIVATIONS, gelu_backward, gelu_forward, gelu_tanh_backward,
                   gelu_tanh_forward, relu_backward, relu_forward)
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .mse import mse_backward, mse_forward
from .softmax import attention_mask_to_additive, softmax_backward, softmax_forward
from .tanh import tanh_backward, tanh_forward
