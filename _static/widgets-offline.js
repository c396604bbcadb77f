/* Saved ipywidgets on the static site (chapters 5 and 8), rendered offline by the vendored
   @jupyter-widgets/html-manager (scripts/vendor_assets.sh, _config.yml nb_ipywidgets_js).
   scripts/sphinx_vendor_assets.py loads this file on the pages with saved widgets, before RequireJS and
   the widget manager; it does two things the widget manager needs here, and tests/test_site_browser.py
   checks the result (no console error, no failed request, widgets drawn).

   1. Where the widget manager finds its icon fonts. It looks for them next to its own module, whose
      address RequireJS derives from the module's name, relative to the *page*:
      book/part2-transformers/@jupyter-widgets/html-manager/dist/*.woff2, a 404. They are in
      _static/vendor/jupyter-widgets/, next to embed-amd.js, so that folder is given as the module's
      path (a global `require` object set before require.js loads is RequireJS's configuration).
   2. MathJax 2's one call. The widgets typeset their labels with MathJax 2's API,
      MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3, which has no Hub,
      so every labelled widget threw "Cannot read properties of undefined (reading 'Queue')". The same
      request is passed on to MathJax 3's typesetPromise. */
(function () {
  "use strict";
  const here = document.currentScript && document.currentScript.src;
  if (here && window.require === undefined) {
    const vendored = new URL("vendor/jupyter-widgets", here).href;
    window.require = { paths: { "@jupyter-widgets/html-manager/dist": vendored } };
    window.__jupyter_widgets_assets_path__ = vendored + "/";
  }

  function typesetWithMathJax3(call) {
    const element = Array.isArray(call) ? call[2] : undefined;
    const mathjax = window.MathJax;
    if (!element || !mathjax || !mathjax.startup || !mathjax.startup.promise) return;
    mathjax.startup.promise
      .then(() => mathjax.typesetPromise([element]))
      .catch((error) => console.warn("MathJax could not typeset a widget label:", error));
  }

  // MathJax 3 replaces window.MathJax when it loads (deferred, before DOMContentLoaded); the widgets
  // render after the page's load event.
  document.addEventListener("DOMContentLoaded", function () {
    const mathjax = window.MathJax;
    if (mathjax && mathjax.startup && !mathjax.Hub) {
      mathjax.Hub = { Queue: typesetWithMathJax3 };
    }
  });
})();
