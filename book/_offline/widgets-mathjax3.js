/* The ipywidgets HTML manager (@jupyter-widgets/html-manager 1.0) typesets widget labels through MathJax 2's
   API, MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3, which has no Hub, so
   every slider label raised "Cannot read properties of undefined (reading 'Queue')". This maps that call onto
   MathJax 3. Loaded (deferred, after MathJax) only on pages with widgets: see nb_ipywidgets_js in _config.yml. */
(function () {
  "use strict";
  var mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) {
    return;
  }
  mathjax.Hub = {
    Queue: function (job) {
      var element = Array.isArray(job) ? job[2] : null;
      if (!element) {
        return;
      }
      var ready = (mathjax.startup && mathjax.startup.promise) || Promise.resolve();
      ready.then(function () {
        return mathjax.typesetPromise ? mathjax.typesetPromise([element]) : null;
      }).catch(function (error) {
        console.warn("MathJax could not typeset a widget label:", error);
      });
    }
  };
})();
