// MathJax 3, served from the site itself (book/build.py copies it from the npm package mathjax@3): the
// book is read offline, so nothing may come from a CDN.  Markdown pages: pymdownx.arithmatex wraps each
// formula in an element of class "arithmatex" as \( \) or \[ \].  Lesson pages: nbconvert keeps the
// notebook's $ $ and $$ $$ in the rendered Markdown cells.  Code (pre, code: MathJax's skipHtmlTags) and
// the lessons' outputs (jp-OutputArea) are left alone, so a dollar sign printed by a lesson stays one.
// (Material's recipe, ignoreHtmlClass ".*|" with processHtmlClass "arithmatex", would skip every
// paragraph of a lesson: the ignore pattern matches an element without a class too.)
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: "jp-OutputArea|tex2jax_ignore",
  },
};
