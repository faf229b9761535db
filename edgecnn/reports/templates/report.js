/* edgecnn report: renders the page data (the JSON in #report-data) lazily, a chunk of cards at a time.
   Every file name and label is put in the page with textContent, never as HTML. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var LABELS = DATA.labels;
  var CHUNK = 96;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function fixed(v) { return v === null || v === undefined ? "n/a" : v.toFixed(3); }
  function basename(p) {
    var i = Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\"));
    return i >= 0 ? p.slice(i + 1) : p;
  }

  /* A thumbnail is a window onto its atlas (5 x 5 cells of a 640 px JPEG):
     item.t = [atlas, x, y, width, height, shown width, shown height]; a model input stored at its own size
     (96 x 96, stretched) is scaled back to the photo's aspect ratio here. */
  var ATLAS = DATA.atlas_size || 640;
  function card(item, caption) {
    var fig = el("figure", "card");
    fig.title = item.p;
    var box = el("div", "thumb");
    var t = item.t;
    if (t && DATA.atlases[t[0]]) {
      var sx = t[5] / t[3], sy = t[6] / t[4];
      var frame = el("div", "frame");
      frame.style.width = t[5] + "px";
      frame.style.height = t[6] + "px";
      var img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = "";
      img.style.width = ATLAS * sx + "px";
      img.style.height = ATLAS * sy + "px";
      img.style.left = -t[1] * sx + "px";
      img.style.top = -t[2] * sy + "px";
      img.addEventListener("error", function () { fig.classList.add("nothumb"); });
      img.src = DATA.atlases[t[0]];
      frame.appendChild(img);
      box.appendChild(frame);
    } else {
      fig.classList.add("nothumb");
    }
    fig.appendChild(box);
    var cap = el("figcaption");
    cap.appendChild(el("span", "name", basename(item.p)));
    caption(item, cap);
    fig.appendChild(cap);
    return fig;
  }

  /* A list rendered CHUNK items at a time: the next chunk comes when its "more" button nears the viewport
     (IntersectionObserver) or is clicked, so a page of 20,000 images starts with a few hundred nodes. */
  function Lazy(root, items, make, kind) {
    root.textContent = "";
    var box = kind === "table" ? el("table", "list") : el("div", "grid");
    var body = kind === "table" ? el("tbody") : box;
    if (body !== box) box.appendChild(body);
    root.appendChild(box);
    var more = el("button", "more");
    more.type = "button";
    root.appendChild(more);
    var shown = 0, observer = null;
    function next() {
      var end = Math.min(items.length, shown + CHUNK);
      var frag = document.createDocumentFragment();
      for (; shown < end; shown++) frag.appendChild(make(items[shown]));
      body.appendChild(frag);
      var left = items.length - shown;
      more.hidden = left <= 0;
      more.textContent = "show " + Math.min(left, CHUNK) + " more (" + left + " left)";
      if (left <= 0 && observer) observer.disconnect();
    }
    function fill() {  /* keep adding while the button is still near the viewport (a tall window) */
      if (shown >= items.length || !root.isConnected || more.offsetParent === null) return;
      if (more.getBoundingClientRect().top < window.innerHeight + 400) {
        next();
        requestAnimationFrame(fill);
      }
    }
    more.addEventListener("click", next);
    if (!items.length) root.appendChild(el("p", "empty", "nothing to show"));
    next();
    if ("IntersectionObserver" in window && shown < items.length) {
      observer = new IntersectionObserver(function (entries) {
        if (entries[entries.length - 1].isIntersecting) fill();
      }, { rootMargin: "400px" });
      observer.observe(more);
    }
    return { stop: function () { if (observer) observer.disconnect(); } };
  }

  function skippedList() {
    var root = document.getElementById("skipped");
    if (!root) return;
    Lazy(root, DATA.skipped, function (s) {
      var tr = el("tr");
      tr.appendChild(el("td", "path", s.p));
      tr.appendChild(el("td", null, s.e));
      return tr;
    }, "table");
  }

  /* classify: groups by predicted label, least confident first; filters by label and confidence range. */
  function initClassify() {
    var state = { label: -1, lo: 0, hi: 1 };
    var byLabel = LABELS.map(function () { return []; });
    DATA.items.forEach(function (it) { byLabel[it.y].push(it); });
    var groups = document.getElementById("groups");
    var shownCount = document.getElementById("shown-count");
    var lists = [];
    function caption(it, cap) {
      var meta = LABELS[it.y] + " " + fixed(it.c);
      if (it.k && it.k.length) meta += " · " + it.k.map(function (k) { return (LABELS[k[0]] || "?") + " " + fixed(k[1]); }).join(", ");
      cap.appendChild(el("span", "meta", meta));
    }
    function render() {
      lists.forEach(function (l) { l.stop(); });
      lists = [];
      groups.textContent = "";
      var total = 0;
      DATA.order.forEach(function (i) {
        if (state.label >= 0 && state.label !== i) return;
        var items = byLabel[i].filter(function (it) { return it.c >= state.lo && it.c <= state.hi; });
        total += items.length;
        if (!items.length && state.label < 0) return;
        var section = el("section", "group");
        section.dataset.label = String(i);
        section.appendChild(el("h3", null, LABELS[i] + " (" + items.length + ")"));
        var body = el("div");
        section.appendChild(body);
        groups.appendChild(section);
        lists.push(Lazy(body, items, function (it) { return card(it, caption); }));
      });
      shownCount.textContent = total + " of " + DATA.items.length + " images";
    }
    document.querySelectorAll("[data-filter-label]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        state.label = Number(btn.getAttribute("data-filter-label"));
        document.querySelectorAll("[data-filter-label]").forEach(function (b) {
          b.setAttribute("aria-pressed", b === btn ? "true" : "false");
        });
        render();
      });
    });
    var lo = document.getElementById("conf-min"), hi = document.getElementById("conf-max"), timer = 0;
    function range() {
      var a = parseFloat(lo.value), b = parseFloat(hi.value);
      state.lo = isFinite(a) ? a : 0;
      state.hi = isFinite(b) ? b : 1;
      clearTimeout(timer);
      timer = setTimeout(render, 120);
    }
    lo.addEventListener("input", range);
    hi.addEventListener("input", range);
    render();
  }

  /* evaluate and train: the confusion grid's cells show their images; the most confident mistakes first. */
  function labelledCaption(it, cap) {
    var meta = el("span", "meta");
    if (it.g !== it.y) {
      meta.appendChild(el("span", "wrong", LABELS[it.y] + " " + fixed(it.c)));
      meta.appendChild(document.createTextNode(" · true " + LABELS[it.g]));
    } else {
      meta.textContent = LABELS[it.y] + " " + fixed(it.c);
    }
    cap.appendChild(meta);
    if (it.o !== undefined && it.o !== it.y) cap.appendChild(el("span", "meta other", "other model: " + LABELS[it.o] + " " + fixed(it.oc)));
  }
  function byConfidence(desc) {
    return function (a, b) { return desc ? b.c - a.c : a.c - b.c; };
  }
  function initLabelled() {
    var cellView = document.getElementById("cell-view");
    var cellList = null;
    document.querySelectorAll(".cell[data-true]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var t = Number(btn.getAttribute("data-true")), p = Number(btn.getAttribute("data-pred"));
        var items = DATA.items.filter(function (it) { return it.g === t && it.y === p; }).sort(byConfidence(t !== p));
        document.querySelectorAll(".cell[data-true]").forEach(function (b) { b.setAttribute("aria-pressed", b === btn ? "true" : "false"); });
        cellView.hidden = false;
        document.getElementById("cell-title").textContent = "true " + LABELS[t] + ", predicted " + LABELS[p] + ": " + items.length + " image" + (items.length === 1 ? "" : "s") + (t !== p ? " (most confident first)" : " (least confident first)");
        if (cellList) cellList.stop();
        cellList = Lazy(document.getElementById("cell-gallery"), items, function (it) { return card(it, labelledCaption); });
      });
    });
    var mistakes = document.getElementById("mistakes");
    if (mistakes) {
      var wrong = DATA.items.filter(function (it) { return it.g !== it.y; }).sort(byConfidence(true));
      Lazy(mistakes, wrong, function (it) { return card(it, labelledCaption); });
    }
    var disagreements = document.getElementById("disagreements");
    if (disagreements) {
      var differ = DATA.items.filter(function (it) { return it.o !== undefined && it.o !== it.y; }).sort(byConfidence(true));
      Lazy(disagreements, differ, function (it) { return card(it, labelledCaption); });
    }
  }

  if (DATA.kind === "classify") initClassify(); else initLabelled();
  skippedList();
  document.body.setAttribute("data-ready", "true");
})();
