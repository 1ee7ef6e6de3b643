// The site's behaviour: plots with hover text from the commit table, the speedup toggle, index filters.
var menagerie = {
  commits: {},
  plots: [],

  hover: function (commit) {
    return commit.label + " · " + commit.date + "<br>" + (commit.message || "(no subject recorded)") + "<br>" +
      commit.versions + "<br>" + commit.runs + " run(s) · " + commit.sha;
  },

  plot: function (element, figure, section) {
    var table = section === null ? null : menagerie.commits[section];
    figure.data.forEach(function (trace) {
      if (table && trace.meta && trace.meta.role === "median") {
        trace.text = trace.x.map(function (x) { return menagerie.hover(table[x]); });
        trace.hovertemplate = "%{text}<br>%{y:.4g}<extra>" + trace.name + "</extra>";
        trace.meta.seconds = trace.y.slice();
      }
    });
    Plotly.newPlot(element, figure.data, figure.layout, {responsive: true, displaylogo: false});
    element.on("plotly_click", function (event) {
      var link = event.points[0].customdata;
      if (link) { window.location.href = document.querySelector("link[rel=stylesheet]").href
        .replace(/assets\/site\.css$/, link); }
    });
    menagerie.plots.push(element);
  },

  toggleSpeedup: function (on) {
    menagerie.plots.forEach(function (element) {
      var ys = [], visible = [];
      element.data.forEach(function (trace) {
        var median = trace.meta && trace.meta.role === "median";
        ys.push(median ? (on ? trace.meta.speedup : trace.meta.seconds) : trace.y);
        visible.push(median ? (!on || !trace.meta.reference ? true : "legendonly") : !on);
      });
      Plotly.update(element, {y: ys, visible: visible},
        {"yaxis.title.text": on ? "speedup over the reference (×)" : "median time per call (s)",
         "yaxis.type": on ? "linear" : "log"});
    });
  },

  filterIndex: function () {
    var selects = document.querySelectorAll("#filters select");
    var apply = function () {
      var shown = 0, rows = document.querySelectorAll("tr.benchmark-row");
      rows.forEach(function (row) {
        var keep = Array.prototype.every.call(selects, function (select) {
          return !select.value || row.dataset[select.dataset.filter] === select.value;
        });
        row.style.display = keep ? "" : "none";
        shown += keep ? 1 : 0;
      });
      document.getElementById("shown").textContent = shown + " of " + rows.length + " shown";
    };
    selects.forEach(function (select) { select.addEventListener("change", apply); });
    apply();
  }
};
