// crawler report: sortable tables (click a header; again to reverse). Inlined, no requests.
"use strict";
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th, col) => {
    th.addEventListener("click", () => {
      const down = th.getAttribute("aria-sort") !== "descending";
      table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const body = table.tBodies[0];
      const key = (row) => {
        const cell = row.cells[col];
        const raw = cell.dataset.value ?? cell.textContent.trim();
        const num = Number(raw);
        return raw !== "" && !Number.isNaN(num) ? num : raw.toLowerCase();
      };
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
        return down ? -order : order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
});
