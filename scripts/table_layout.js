// Injected by scripts/screenshot_book.py into a copy of a page: measures every table as
// the browser laid it out and leaves what it found in <div id="tomato-layout"
// data-problems="[...]">, which --dump-dom then carries back. A table may be wider than
// its column only inside a container that scrolls; a cell's text must fit its cell (else
// it runs into the next: headers collide); a number must sit on one line.
window.addEventListener("load", function () {
  setTimeout(function () {
    var problems = [];
    // The article column (not <main>, which also holds the right-hand sidebar).
    var column = document.querySelector(".bd-article") || document.querySelector("article")
      || document.querySelector("main") || document.body;
    var right = column.getBoundingClientRect().right;
    var NUMBER = /^[-+\u2212]?\d[\d.,]*\s*(%|\u00d7|ms|s)?$/;
    function scrolls(el) {
      for (var e = el.parentElement; e && e !== column; e = e.parentElement) {
        var o = getComputedStyle(e).overflowX;
        if (o === "auto" || o === "scroll") return true;
      }
      return false;
    }
    function lines(cell) {
      // Lines of the cell's text: the text boxes' tops, a line apart (not a pixel's rounding).
      var walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT), node, tops = [];
      while ((node = walk.nextNode())) {
        var range = document.createRange();
        range.selectNodeContents(node);
        Array.prototype.forEach.call(range.getClientRects(), function (r) {
          if (r.width > 0 && tops.every(function (t) { return Math.abs(t - r.top) > r.height / 2; })) {
            tops.push(r.top);
          }
        });
      }
      return tops.length;
    }
    document.querySelectorAll("table").forEach(function (table) {
      var caption = table.querySelector("caption");
      var name = (caption || table.querySelector("th") || table).textContent.trim().slice(0, 60);
      var box = table.getBoundingClientRect();
      if (box.right > right + 1 && !scrolls(table)) {
        problems.push("table wider than its column by " + Math.round(box.right - right) + " px: " + name);
      }
      var spill = [], wrapped = [];
      table.querySelectorAll("td, th").forEach(function (cell) {
        var text = cell.textContent.trim();
        if (cell.scrollWidth > cell.clientWidth + 1) spill.push(text.slice(0, 24));
        else if (NUMBER.test(text) && lines(cell) > 1) wrapped.push(text);
      });
      if (spill.length) {
        problems.push(spill.length + " cell(s) whose text runs out of the cell (\"" + spill[0] + "\"): " + name);
      }
      if (wrapped.length) {
        problems.push(wrapped.length + " number(s) broken across lines (\"" + wrapped[0] + "\"): " + name);
      }
    });
    var out = document.createElement("div");
    out.id = "tomato-layout";
    out.setAttribute("data-problems", JSON.stringify(problems));
    document.body.appendChild(out);
  }, 0);
});
