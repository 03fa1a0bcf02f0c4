/* Loyal Promoters dashboard: draws the charts from the JSON the page embeds,
   and makes the touchpoint table sortable. No inline scripts (CSP-friendly). */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var points = data.trend.points;
  var labels = points.map(function (p) { return p.period; });
  var GREEN = "#198754", GREY = "#6c757d", RED = "#dc3545", BLUE = "#0d6efd";

  if (window.Chart) {
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;

    new Chart(document.getElementById("chart-trend"), {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          /* Weeks or months without answers are null: span them, as the NPS line does, so the band stays drawn. */
          { label: "95% low", data: points.map(function (p) { return p.low; }), borderWidth: 0, pointRadius: 0, fill: false,
            spanGaps: true },
          { label: "95% interval", data: points.map(function (p) { return p.high; }), borderWidth: 0, pointRadius: 0,
            backgroundColor: "rgba(13,110,253,0.15)", fill: "-1", spanGaps: true },
          { label: "NPS", data: points.map(function (p) { return p.nps; }), borderColor: BLUE, backgroundColor: BLUE,
            tension: 0.2, spanGaps: true }
        ]
      },
      options: {
        scales: { y: { suggestedMin: -100, suggestedMax: 100 } },
        plugins: {
          legend: { labels: { filter: function (item) { return item.text !== "95% low"; } } },
          tooltip: { callbacks: { afterBody: function (items) { return "n = " + points[items[0].dataIndex].n; } } }
        }
      }
    });

    new Chart(document.getElementById("chart-distribution"), {
      type: "bar",
      data: {
        labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        datasets: [{
          label: "Responses",
          data: data.distribution,
          backgroundColor: data.distribution.map(function (_, score) { return score >= 9 ? GREEN : score >= 7 ? GREY : RED; })
        }]
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });

    new Chart(document.getElementById("chart-shares"), {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          { label: "Promoters %", data: points.map(function (p) { return p.promoters; }), backgroundColor: GREEN },
          { label: "Passives %", data: points.map(function (p) { return p.passives; }), backgroundColor: GREY },
          { label: "Detractors %", data: points.map(function (p) { return p.detractors; }), backgroundColor: RED }
        ]
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, max: 100, beginAtZero: true } } }
    });
  }

  /* Sortable table: click a header button to sort by that column; again to reverse. */
  var table = document.getElementById("touchpoint-table");
  if (table) {
    table.querySelectorAll("th button[data-sort]").forEach(function (button) {
      var th = button.closest("th");
      var column = Array.prototype.indexOf.call(th.parentNode.children, th);
      button.addEventListener("click", function () {
        var numeric = button.dataset.sort === "number";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
          var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
})();
