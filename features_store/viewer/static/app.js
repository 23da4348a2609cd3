/* affectsync viewer: the page's logic, plain JavaScript (no framework, no build step).
 *
 * Data come from the local server (/api/...) or, in a static export (view --out), from scripts under data/ that
 * call window.affectsyncStatic.put(key, value): browsers refuse fetch() from file://, not <script>.
 * Timelines are canvases on the frame_time clock: x is time, every column carries its own start and end time, so
 * variable frame rates and own-clock features (mel64 at 100 Hz) line up.
 */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const PALETTE = ["#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#7f7f7f", "#17becf",
                   "#bcbd22", "#e377c2"];
  const MIN_WINDOW_FRAMES = 10;

  // ---------------------------------------------------------------- data sources
  class ServerSource {
    constructor() { this.isStatic = false; }
    async json(path) {
      const response = await fetch(path);
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      return body;
    }
    index() { return this.json("api/index"); }
    video(id) { return this.json(`api/video?id=${enc(id)}`); }
    range(id, start, stop, bins, feature, series) {
      let path = `api/range?id=${enc(id)}&start=${start}&stop=${stop}&bins=${bins}`;
      if (feature) path += `&feature=${enc(feature)}`;
      if (series) path += `&series=${series.join(",")}`;
      return this.json(path);
    }
    frame(id, index) { return this.json(`api/frame?id=${enc(id)}&i=${index}`); }
    imageUrl(id, details, kind) { return `api/image?id=${enc(id)}&i=${details.index}&kind=${kind}`; }
  }

  class StaticSource {
    constructor(store) { this.isStatic = true; this.store = store; this.loading = {}; }
    load(key, src) {
      if (key in this.store.items) return Promise.resolve(this.store.items[key]);
      if (!this.loading[key]) {
        this.loading[key] = new Promise((resolve, reject) => {
          const script = document.createElement("script");
          script.src = src;
          script.onload = () => (key in this.store.items ? resolve(this.store.items[key])
                                                          : reject(new Error(`${src} did not define ${key}`)));
          script.onerror = () => reject(new Error(`cannot load ${src}`));
          document.head.appendChild(script);
        });
      }
      return this.loading[key];
    }
    folder(id) { return `data/${this.store.items.index.folders[id]}`; }
    videoData(id) { return this.load(`video:${id}`, `${this.folder(id)}/video.js`); }
    index() { return Promise.resolve(this.store.items.index); }
    async video(id) { return (await this.videoData(id)).meta; }
    async range(id, start, stop, bins, feature, series) {
      const data = await this.videoData(id);
      const answer = Object.assign({}, data.overview);
      if (feature && (!series || series.includes("heat"))) {
        answer.heat = await this.load(`heat:${id}:${feature}`, `${this.folder(id)}/heat_${enc(feature)}.js`);
      }
      return answer;
    }
    async frame(id, index) {
      const data = await this.videoData(id);
      const picks = data.exported_frames;
      let lo = 0, hi = picks.length - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (picks[mid] < index) lo = mid + 1; else hi = mid; }
      if (lo > 0 && Math.abs(picks[lo - 1] - index) <= Math.abs(picks[lo] - index)) lo -= 1;
      const shown = data.frames[String(picks[lo])];
      const perFrame = data.per_frame;
      const details = Object.assign({}, shown, {index: index, shown_index: shown.index,
                                                time_s: perFrame.frame_time_s[index]});
      if (perFrame.face_valid) details.face_valid = perFrame.face_valid[index] === 1;
      if (perFrame.word_index) {
        const w = perFrame.word_index[index];
        details.word = w >= 0 ? Object.assign({index: w}, data.words[w]) : null;
      }
      return details;
    }
    imageUrl(id, details) { return details.crop_file || null; }
    async frameTimes(id) { return (await this.videoData(id)).per_frame.frame_time_s; }
  }

  // ---------------------------------------------------------------- state
  const state = {
    source: null, index: null, videoId: null, meta: null, T: 0, playhead: 0,
    view: {start: 0, stop: 1}, range: null, overview: null, feature: null, frameTimes: null,
    details: null, frameBusy: false, framePending: null, rangeSeq: 0, rangeTimer: null, dragging: null,
  };
  const rows = {};  // timeline name -> {canvas, draw}

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    console.error(message);
  }
  function clearError() { $("error").hidden = true; }

  // ---------------------------------------------------------------- video list
  function renderVideoList() {
    const list = $("video-list");
    list.innerHTML = "";
    for (const video of state.index.videos) {
      const item = document.createElement("li");
      item.dataset.video = video.video_id;
      const duration = typeof video.duration_s === "number" ? video.duration_s.toFixed(2) : "?";
      const name = document.createElement("div");
      name.className = "vid";
      name.textContent = video.video_id;
      const facts = document.createElement("div");
      facts.className = "facts";
      const badge = document.createElement("span");
      badge.className = `badge ${video.complete ? "complete" : "partial"}`;
      badge.textContent = video.complete ? "complete" : "partial";
      facts.append(badge, ` T ${video.T} · ${duration} s`);
      const features = document.createElement("div");
      features.className = "features";
      features.textContent = video.features.join(", ");
      item.append(name, facts, features);  // text only: names come from the store, never markup
      item.addEventListener("click", () => openVideo(video.video_id, 0));
      list.appendChild(item);
    }
    const failures = state.index.failures || [];
    $("failures").hidden = failures.length === 0;
    $("failure-list").innerHTML = "";
    for (const failure of failures) {
      const item = document.createElement("li");
      item.textContent = `${failure.video_id} (${failure.source}): ${failure.reason}`;
      $("failure-list").appendChild(item);
    }
    const last = (path) => path.replace(/[\\/]+$/, "").split(/[\\/]/).pop();
    $("store-name").textContent = last(state.index.store);
    $("store-name").title = state.index.store;
    $("run-name").textContent = state.index.run ? `run ${last(state.index.run)}` : "";
    $("run-name").title = state.index.run || "";
  }

  // ---------------------------------------------------------------- opening a video
  async function openVideo(videoId, frame) {
    clearError();
    state.videoId = videoId;
    state.meta = await state.source.video(videoId);
    state.T = state.meta.T;
    state.details = null;
    state.range = null;
    state.frameTimes = state.source.isStatic ? await state.source.frameTimes(videoId) : null;
    for (const item of $("video-list").children) item.classList.toggle("selected", item.dataset.video === videoId);
    $("title").textContent = videoId;
    const select = $("feature-select");
    select.innerHTML = "";
    for (const feature of state.meta.heat_features) {
      const option = document.createElement("option");
      option.value = feature.name;
      option.textContent = `${feature.name} (${feature.values_per_row})`;
      select.appendChild(option);
    }
    state.feature = state.meta.default_feature;
    if (state.feature) select.value = state.feature;
    buildRows();
    const [start, stop] = state.meta.default_window;
    state.view = {start, stop};
    frame = Math.max(0, Math.min(state.T - 1, frame | 0));
    if (frame < start || frame >= stop) centreView(frame);
    state.overview = await state.source.range(videoId, 0, state.T, canvasWidth(), null,
                                              ["face_valid", "words"]);
    state.playhead = frame;
    await loadRange();
    setPlayhead(frame, true);
  }

  function centreView(frame) {
    const size = state.view.stop - state.view.start;
    let start = Math.max(0, Math.round(frame - size / 2));
    start = Math.min(start, Math.max(0, state.T - size));
    state.view = {start, stop: Math.min(state.T, start + size)};
  }

  function canvasWidth() {
    const canvas = rows.axis ? rows.axis.canvas : null;
    const width = canvas ? canvas.clientWidth : 800;
    return Math.max(100, Math.min(4000, Math.round(width || 800)));
  }

  function scheduleRange() {
    clearTimeout(state.rangeTimer);
    state.rangeTimer = setTimeout(() => loadRange().catch((e) => showError(e.message)), 60);
    drawAll();
  }

  async function loadRange() {
    const seq = ++state.rangeSeq;
    const {start, stop} = state.view;
    const answer = await state.source.range(state.videoId, start, stop, canvasWidth(), state.feature, null);
    if (seq !== state.rangeSeq) return;
    state.range = answer;
    $("view-range").textContent = `frames ${start}-${stop - 1} of ${state.T}`;
    drawAll();
  }

  // ---------------------------------------------------------------- time <-> x
  function frameTime(frame) {
    if (state.frameTimes) return state.frameTimes[Math.max(0, Math.min(state.T - 1, frame))];
    const range = state.range;
    if (!range) return 0;
    if (range.frame_time_s && frame >= range.start && frame <= range.stop) return range.frame_time_s[frame - range.start];
    return interpolate(range.edges, range.time_s, frame);
  }

  function interpolate(xs, ys, x) {
    if (x <= xs[0]) return ys[0];
    if (x >= xs[xs.length - 1]) return ys[ys.length - 1];
    let lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] <= x) lo = mid; else hi = mid; }
    return ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / (xs[hi] - xs[lo]);
  }

  function viewTimes() {
    if (state.frameTimes) {
      const end = state.view.stop < state.T ? state.frameTimes[state.view.stop]
        : state.frameTimes[state.T - 1] + (state.T > 1 ? state.frameTimes[state.T - 1] - state.frameTimes[state.T - 2] : 0.04);
      return [state.frameTimes[state.view.start], end];
    }
    if (!state.range) return [0, 1];
    return [state.range.time_s[0], state.range.time_s[state.range.time_s.length - 1]];
  }

  function frameAtTime(t) {
    if (state.frameTimes) return lastAtOrBefore(state.frameTimes, t);
    const range = state.range;
    if (range.frame_time_s) return range.start + lastAtOrBefore(range.frame_time_s, t);
    return Math.floor(interpolate(range.time_s, range.edges, t));
  }

  function lastAtOrBefore(times, t) {
    let lo = 0, hi = times.length - 1;
    if (t <= times[0]) return 0;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= t) lo = mid; else hi = mid - 1; }
    return lo;
  }

  function playheadTime() {
    if (state.details && state.details.index === state.playhead) return state.details.time_s;
    return frameTime(state.playhead);
  }

  // ---------------------------------------------------------------- playhead and frames
  function setPlayhead(frame, force) {
    frame = Math.max(0, Math.min(state.T - 1, frame));
    if (frame === state.playhead && !force) return;
    state.playhead = frame;
    const label = $("frame-index");
    label.textContent = `frame ${frame} / ${state.T}`;
    label.dataset.frame = String(frame);
    $("frame-time").textContent = `${playheadTime().toFixed(3)} s`;
    history.replaceState(null, "", `#video=${enc(state.videoId)}&frame=${frame}`);
    if (frame < state.view.start || frame >= state.view.stop) {
      centreView(frame);
      scheduleRange();
    } else {
      drawAll();
    }
    requestFrame(frame);
  }

  async function requestFrame(frame) {
    if (state.frameBusy) { state.framePending = frame; return; }
    state.frameBusy = true;
    try {
      const details = await state.source.frame(state.videoId, frame);
      if (details.index === state.playhead) showDetails(details);
    } catch (error) {
      showError(error.message);
    } finally {
      state.frameBusy = false;
      const pending = state.framePending;
      state.framePending = null;
      if (pending !== null && pending !== (state.details && state.details.index)) requestFrame(pending);
    }
  }

  function showDetails(details) {
    state.details = details;
    $("frame-time").textContent = `${details.time_s.toFixed(3)} s`;
    const word = $("word");
    word.dataset.frame = String(details.index);
    word.dataset.wordIndex = details.word ? String(details.word.index) : "-1";
    word.textContent = details.word ? details.word.text : "(no word)";
    word.classList.toggle("none", !details.word);
    const meta = state.meta;
    const faceText = details.face_valid === null || details.face_valid === undefined ? "face: not extracted"
      : details.face_valid ? "face: found" : "face: none at this frame";
    $("face-state").textContent = faceText + (details.shown_index !== undefined && details.shown_index !== details.index
      ? ` (shared copy: showing exported frame ${details.shown_index})` : "");
    renderFer(details);
    renderTasksNow(details);
    const useSource = meta.source.reachable;
    $("source-state").textContent = useSource ? `source frame from ${meta.source.name}`
      : `${meta.source.reason || "source video not reachable"}`;
    const frameImage = $("frame-image");
    const cropImage = $("crop-image");
    const crop = details.face_valid && meta.has.face_crop ? state.source.imageUrl(state.videoId, details, "crop") : null;
    const main = useSource ? state.source.imageUrl(state.videoId, details, "source") : crop;
    frameImage.classList.toggle("crop", !useSource);
    setImage(frameImage, main, details, useSource ? "source" : "crop");
    $("no-frame").hidden = Boolean(main);
    $("no-frame").textContent = main ? "" : meta.has.face_crop ? "no face at this frame"
      : "no image: the store has no face_crop and the source video is not reachable (view --media DIR)";
    $("crop-box").style.display = useSource ? "" : "none";
    if (useSource) setImage(cropImage, crop, details, "crop");
    drawAll();
  }

  function setImage(image, url, details, kind) {
    const overlay = image === $("frame-image") ? $("frame-overlay") : $("crop-overlay");
    if (!url) {
      image.removeAttribute("src");
      image.dataset.frame = "";
      image.style.visibility = "hidden";
      overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
      return;
    }
    image.style.visibility = "visible";
    image.onload = () => {
      image.dataset.loadedFrame = String(details.index);
      drawOverlay(image, overlay, details, kind);
    };
    image.dataset.frame = String(details.index);
    if (image.getAttribute("src") !== url) image.src = url;
    else if (image.complete) image.onload();
  }

  function drawOverlay(image, overlay, details, kind) {
    overlay.width = image.clientWidth;
    overlay.height = image.clientHeight;
    overlay.style.left = `${image.offsetLeft}px`;
    overlay.style.top = `${image.offsetTop}px`;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!details.face_valid) return;
    const crop = (state.meta.arrays.face_crop || {shape: [0, 112]}).shape[1] || 112;
    const scale = kind === "source" ? image.clientWidth / state.meta.width : image.clientWidth / crop;
    const box = kind === "source" ? details.box && [[details.box[0], details.box[1]], [details.box[2], details.box[1]],
                                                    [details.box[2], details.box[3]], [details.box[0], details.box[3]]]
                                  : details.box_crop;
    if (box) {
      ctx.strokeStyle = "#35d07f";
      ctx.lineWidth = 2;
      ctx.beginPath();
      box.forEach(([x, y], k) => (k ? ctx.lineTo(x * scale, y * scale) : ctx.moveTo(x * scale, y * scale)));
      ctx.closePath();
      ctx.stroke();
    }
    const points = kind === "source" ? details.landmarks_source : details.landmarks_crop;
    if (points) {
      ctx.fillStyle = "#ffd400";
      for (const [x, y] of points) { ctx.beginPath(); ctx.arc(x * scale, y * scale, 1.6, 0, 2 * Math.PI); ctx.fill(); }
    }
  }

  function renderFer(details) {
    const box = $("fer-bars");
    box.innerHTML = "";
    if (!details.fer) return;
    columnNames(details.fer.columns, [details.fer.values]).forEach((name, k) => {
      const value = details.fer.values ? details.fer.values[k] : null;
      const label = document.createElement("div");
      label.textContent = name;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = `${value === null ? 0 : Math.round(value * 100)}%`;
      fill.style.background = PALETTE[k % PALETTE.length];
      bar.appendChild(fill);
      const number = document.createElement("div");
      number.className = "num";
      number.textContent = value === null ? "-" : value.toFixed(2);
      box.append(label, bar, number);
    });
  }

  function renderTasksNow(details) {
    const box = $("tasks-now");
    box.innerHTML = "";
    const tasks = details.tasks || {};
    for (const [task, entry] of Object.entries(tasks)) {
      const spec = state.meta.tasks[task];
      const line = document.createElement("div");
      line.dataset.task = task;
      const show = (value) => {
        if (value === null || value === undefined) return "-";
        if (task === "expr") return spec.columns[value] || String(value);
        if (Array.isArray(value)) return value.map((v) => (v === null ? "-" : Number(v).toFixed(2))).join(", ");
        return String(value);
      };
      line.textContent = `${task}: predicted ${show(entry.prediction)} · label ${show(entry.label)}`;
      box.appendChild(line);
    }
  }

  // ---------------------------------------------------------------- timelines
  function addRow(name, label, height, draw, note) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.row = name;
    const caption = document.createElement("div");
    caption.className = "label";
    caption.textContent = label;
    if (note) { const small = document.createElement("small"); small.textContent = note; caption.appendChild(small); }
    const canvas = document.createElement("canvas");
    canvas.id = `tl-${name}`;
    canvas.style.height = `${height}px`;
    row.append(caption, canvas);
    $("timelines").appendChild(row);
    rows[name] = {canvas, draw, height};
    if (name === "overview") attachOverviewMouse(canvas); else attachScrub(canvas);
    return row;
  }

  function addLegend(entries) {
    const legend = document.createElement("div");
    legend.className = "legend";
    entries.forEach(([name, colour, dashed]) => {
      const item = document.createElement("span");
      item.innerHTML = `<i style="background:${colour}${dashed ? ";opacity:.5" : ""}"></i>`;
      item.append(name);
      legend.appendChild(item);
    });
    $("timelines").appendChild(legend);
  }

  function buildRows() {
    $("timelines").innerHTML = "";
    for (const key of Object.keys(rows)) delete rows[key];
    const meta = state.meta;
    addRow("overview", "whole video", 22, drawOverview);
    if (meta.n_words !== null) addRow("words", "words", 24, drawWords, `${meta.n_words} words`);
    if (meta.has.face_valid) addRow("face", "face_valid", 12, (c) => drawValidity(c, "face_valid", "#35a86b"));
    if (meta.audio_strip) addRow("audio", "audio", 54, (c) => drawHeat(c, "audio", true), meta.audio_strip);
    if (meta.has.audio_valid) addRow("audio-valid", "audio_valid", 8, (c) => drawValidity(c, "audio_valid", "#4c78a8"));
    if (meta.has.fer) {
      addRow("fer", "fer", 70, drawFer, "probabilities");
      const names = meta.fer_columns || Array.from({length: meta.arrays.fer.shape[1]}, (_, k) => String(k));
      addLegend(names.map((name, k) => [name, PALETTE[k % PALETTE.length]]));
    }
    if (meta.heat_features.length) addRow("feature", "feature", 54, (c) => drawHeat(c, "heat", false), "select above");
    for (const [task, spec] of Object.entries(meta.tasks || {})) {
      const note = `${spec.fold ? spec.fold + " " : ""}${spec.role ? spec.role + " video" : "predicted"}` +
        (spec.labels ? "" : ", no labels");
      if (spec.kind === "values") {
        addRow(`task-${task}`, task, 60, (c) => drawTaskValues(c, task), note);
        addLegend(spec.columns.flatMap((name, k) => [[`${name} predicted`, PALETTE[k]], [`${name} label`, PALETTE[k], true]]));
      } else if (spec.kind === "classes") {
        addRow(`task-${task}`, task, 30, (c) => drawTaskClasses(c, task), note);
        addLegend([["top: predicted, bottom: label", "transparent"],
                   ...spec.columns.map((name, k) => [name, PALETTE[k % PALETTE.length]])]);
      } else {
        addRow(`task-${task}`, task, Math.min(90, 6 * spec.columns.length + 10), (c) => drawTaskBinary(c, task), note);
        addLegend([["predicted (each unit's upper line)", "#1f77b4"], ["label (lower line)", "#ff7f0e"]]);
      }
    }
    addRow("axis", "time (s)", 20, drawAxis);
  }

  function prepare(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return {ctx, width, height};
  }

  function xOf(t, width) {
    const [t0, t1] = viewTimes();
    return (t - t0) / (t1 - t0 || 1) * width;
  }

  function drawAll() {
    if (!state.meta) return;
    for (const row of Object.values(rows)) {
      const {ctx, width, height} = prepare(row.canvas);
      if (row.canvas.id !== "tl-overview" && !state.range) continue;
      row.draw({ctx, width, height});
      if (row.canvas.id !== "tl-overview") drawPlayhead(ctx, width, height);
    }
  }

  function drawPlayhead(ctx, width, height) {
    const x = xOf(playheadTime(), width);
    ctx.strokeStyle = "#e02424";
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height); ctx.stroke();
  }

  function columns(series, width, each) {
    // calls each(k, x0, x1) for every column of a per-frame series of the current range
    const times = state.range.time_s;
    for (let k = 0; k < times.length - 1; k++) {
      const x0 = Math.floor(xOf(times[k], width)), x1 = Math.ceil(xOf(times[k + 1], width));
      if (x1 < 0 || x0 > width) continue;
      each(k, x0, Math.max(x1, x0 + 1));
    }
  }

  function drawValidity({ctx, width, height}, name, colour) {
    const values = state.range[name];
    if (!values) return;
    ctx.fillStyle = "#f2d7d5";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = colour;
    columns(values, width, (k, x0, x1) => {
      if (values[k] === null || values[k] <= 0) return;
      ctx.globalAlpha = 0.35 + 0.65 * values[k];
      ctx.fillRect(x0, 0, x1 - x0, height);
    });
    ctx.globalAlpha = 1;
  }

  function drawWords({ctx, width, height}) {
    const words = state.range.words || {items: []};
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    if (words.too_many) {
      ctx.fillStyle = "#7b8794";
      ctx.fillText(`${words.count} words here: zoom in to see them`, 6, height / 2);
      return;
    }
    const current = state.details && state.details.index === state.playhead && state.details.word
      ? state.details.word.index : -1;
    for (const word of words.items) {
      const x0 = xOf(word.start, width), x1 = xOf(word.end, width);
      if (x1 < 0 || x0 > width) continue;
      ctx.fillStyle = word.index === current ? "#0b4f9c" : (word.index % 2 ? "#c9dcf0" : "#a9c7e6");
      ctx.fillRect(x0, 2, Math.max(1, x1 - x0 - 1), height - 4);
      const text = word.text || "";
      if (ctx.measureText(text).width < x1 - x0 - 4) {
        ctx.fillStyle = word.index === current ? "white" : "#102a43";
        ctx.fillText(text, x0 + 2, height / 2);
      }
    }
  }

  const VIRIDIS = (() => {
    const anchors = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const table = [];
    for (let v = 0; v < 256; v++) {
      const position = v / 255 * (anchors.length - 1);
      const k = Math.min(anchors.length - 2, Math.floor(position)), f = position - k;
      table.push(anchors[k].map((c, i) => Math.round(c + (anchors[k + 1][i] - c) * f)));
    }
    return table;
  })();

  function heatImage(strip) {
    // the strip's bytes (rows x columns, 1-255; 0: no data) as a canvas, row 0 at the bottom
    if (strip._image) return strip._image;
    const bytes = Uint8Array.from(atob(strip.data), (c) => c.charCodeAt(0));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, strip.columns);
    canvas.height = Math.max(1, strip.rows);
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(canvas.width, canvas.height);
    for (let r = 0; r < strip.rows; r++) {
      for (let c = 0; c < strip.columns; c++) {
        const value = bytes[r * strip.columns + c];
        const at = ((strip.rows - 1 - r) * strip.columns + c) * 4;
        if (value === 0) { image.data.set([235, 235, 235, 255], at); continue; }
        const [red, green, blue] = VIRIDIS[Math.round((value - 1) / 254 * 255)];
        image.data.set([red, green, blue, 255], at);
      }
    }
    ctx.putImageData(image, 0, 0);
    strip._image = canvas;
    return canvas;
  }

  function drawHeat({ctx, width, height}, key, isAudio) {
    const strip = state.range[key];
    if (!strip) {
      ctx.fillStyle = "#9aa5b1";
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(isAudio ? "no audio strip" : "choose a feature", 6, height / 2);
      return;
    }
    const image = heatImage(strip);
    const times = strip.time_s || state.range.time_s;
    ctx.imageSmoothingEnabled = false;
    for (let k = 0; k < strip.columns; k++) {
      const x0 = Math.floor(xOf(times[k], width)), x1 = Math.ceil(xOf(times[k + 1], width));
      if (x1 < 0 || x0 > width) continue;
      ctx.drawImage(image, k, 0, 1, strip.rows, x0, 0, Math.max(1, x1 - x0), height);
    }
    if (!isAudio) {
      ctx.fillStyle = "rgba(255,255,255,.85)";
      ctx.fillRect(2, 2, ctx.measureText(strip.name).width + 8, 14);
      ctx.fillStyle = "#1d232a";
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(strip.name, 6, 12);
    }
  }

  function drawLines(ctx, width, height, values, column, colour, low, high, dashed) {
    const times = state.range.time_s;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.3;
    ctx.setLineDash(dashed ? [4, 3] : []);
    ctx.beginPath();
    let drawing = false;
    for (let k = 0; k < values.length; k++) {
      const row = values[k];
      const value = row === null ? null : (Array.isArray(row) ? row[column] : row);
      if (value === null) { drawing = false; continue; }
      const x = xOf((times[k] + times[k + 1]) / 2, width);
      const y = height - (value - low) / (high - low) * (height - 4) - 2;
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  function columnNames(names, rows) {
    // the stored column names, else numbers for the columns of the first row with values
    if (names) return names;
    const row = (rows || []).find((r) => r !== null);
    return row ? row.map((_, k) => String(k)) : [];
  }

  function drawFer({ctx, width, height}) {
    const fer = state.range.fer;
    if (!fer) return;
    columnNames(fer.columns, fer.values).forEach((name, k) =>
      drawLines(ctx, width, height, fer.values, k, PALETTE[k % PALETTE.length], 0, 1));
  }

  function drawTaskValues({ctx, width, height}, task) {
    const entry = (state.range.tasks || {})[task];
    if (!entry) return;
    ctx.strokeStyle = "#e4e7eb";
    ctx.beginPath(); ctx.moveTo(0, height / 2); ctx.lineTo(width, height / 2); ctx.stroke();
    state.meta.tasks[task].columns.forEach((name, k) => {
      if (entry.label) drawLines(ctx, width, height, entry.label, k, PALETTE[k], -1, 1, true);
      drawLines(ctx, width, height, entry.prediction, k, PALETTE[k], -1, 1, false);
    });
  }

  function drawTaskClasses({ctx, width, height}, task) {
    const entry = (state.range.tasks || {})[task];
    if (!entry) return;
    const half = height / 2;
    const paint = (values, top) => {
      if (!values) return;
      columns(values, width, (k, x0, x1) => {
        if (values[k] === null) return;
        ctx.fillStyle = PALETTE[values[k] % PALETTE.length];
        ctx.fillRect(x0, top, x1 - x0, half - 1);
      });
    };
    paint(entry.prediction, 0);
    paint(entry.label, half);
  }

  function drawTaskBinary({ctx, width, height}, task) {
    const entry = (state.range.tasks || {})[task];
    if (!entry) return;
    const units = state.meta.tasks[task].columns.length;
    const rowHeight = height / (2 * units);
    const paint = (values, offset, colour) => {
      if (!values) return;
      columns(values, width, (k, x0, x1) => {
        if (values[k] === null) return;
        values[k].forEach((value, u) => {
          if (value === null || value <= 0) return;
          ctx.globalAlpha = value;
          ctx.fillStyle = colour;
          ctx.fillRect(x0, (2 * u + offset) * rowHeight, x1 - x0, rowHeight - 0.5);
        });
      });
      ctx.globalAlpha = 1;
    };
    paint(entry.prediction, 0, "#1f77b4");
    paint(entry.label, 1, "#ff7f0e");
  }

  function drawAxis({ctx, width, height}) {
    const [t0, t1] = viewTimes();
    const span = t1 - t0 || 1;
    const raw = span / Math.max(2, width / 90);
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    ctx.fillStyle = "#3e4c59";
    ctx.strokeStyle = "#9aa5b1";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = xOf(t, width);
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, 5); ctx.stroke();
      ctx.fillText(t.toFixed(step < 1 ? (step < 0.1 ? 2 : 1) : 0), x + 2, 6);
    }
  }

  function drawOverview({ctx, width, height}) {
    const overview = state.overview;
    if (!overview) return;
    const times = overview.time_s;
    const total0 = times[0], total1 = times[times.length - 1];
    const x = (t) => (t - total0) / (total1 - total0 || 1) * width;
    ctx.fillStyle = "#eef2f6";
    ctx.fillRect(0, 0, width, height);
    if (overview.face_valid) {
      ctx.fillStyle = "#35a86b";
      overview.face_valid.forEach((value, k) => {
        if (value === null || value <= 0) return;
        ctx.globalAlpha = 0.25 + 0.5 * value;
        const x0 = Math.floor(x(times[k]));
        ctx.fillRect(x0, height / 2, Math.max(1, Math.ceil(x(times[k + 1])) - x0), height / 2);
      });
      ctx.globalAlpha = 1;
    }
    ctx.fillStyle = "#4c78a8";
    for (const word of (overview.words && overview.words.items) || []) {
      ctx.fillRect(x(word.start), 2, Math.max(1, x(word.end) - x(word.start)), height / 2 - 3);
    }
    const [v0, v1] = viewTimes();
    ctx.strokeStyle = "#1f2933";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x(v0) + 0.5, 0.5, Math.max(2, x(v1) - x(v0) - 1), height - 1);
    const p = x(playheadTime());
    ctx.strokeStyle = "#e02424";
    ctx.beginPath(); ctx.moveTo(p, 0); ctx.lineTo(p, height); ctx.stroke();
  }

  // ---------------------------------------------------------------- mouse and keys
  function eventFrame(canvas, event) {
    const box = canvas.getBoundingClientRect();
    const [t0, t1] = viewTimes();
    const t = t0 + (event.clientX - box.left) / box.width * (t1 - t0);
    return frameAtTime(t);
  }

  function attachScrub(canvas) {
    canvas.addEventListener("mousedown", (event) => {
      if (!state.range) return;
      state.dragging = canvas;
      setPlayhead(eventFrame(canvas, event));
      event.preventDefault();
    });
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      zoom(event.deltaY < 0 ? 1 / 1.4 : 1.4, eventFrame(canvas, event));
    }, {passive: false});
  }

  function attachOverviewMouse(canvas) {
    const jump = (event) => {
      const overview = state.overview;
      if (!overview) return;
      const box = canvas.getBoundingClientRect();
      const times = overview.time_s;
      const t = times[0] + (event.clientX - box.left) / box.width * (times[times.length - 1] - times[0]);
      const frame = Math.floor(interpolate(times, overview.edges, t));
      centreView(frame);
      scheduleRange();
      setPlayhead(frame);
    };
    canvas.addEventListener("mousedown", (event) => { jump(event); event.preventDefault(); });
  }

  document.addEventListener("mousemove", (event) => {
    if (state.dragging && state.range) setPlayhead(eventFrame(state.dragging, event));
  });
  document.addEventListener("mouseup", () => { state.dragging = null; });

  function zoom(factor, around) {
    const size = state.view.stop - state.view.start;
    const wanted = Math.max(Math.min(MIN_WINDOW_FRAMES, state.T), Math.min(state.T, Math.round(size * factor)));
    if (wanted === size) return;
    const centre = around === undefined ? state.playhead : around;
    const share = (centre - state.view.start) / size;
    let start = Math.round(centre - share * wanted);
    start = Math.max(0, Math.min(start, state.T - wanted));
    state.view = {start, stop: start + wanted};
    scheduleRange();
  }

  document.addEventListener("keydown", (event) => {
    if (!state.meta || ["SELECT", "INPUT", "TEXTAREA"].includes(event.target.tagName)) return;
    const step = event.shiftKey ? 10 : 1;
    const moves = {ArrowRight: step, ArrowLeft: -step};
    if (event.key in moves) {
      event.preventDefault();
      setPlayhead(state.playhead + moves[event.key]);
    } else if (event.key === "Home") {
      setPlayhead(0);
    } else if (event.key === "End") {
      setPlayhead(state.T - 1);
    } else if (event.key === "+" || event.key === "=") {
      zoom(1 / 1.4);
    } else if (event.key === "-") {
      zoom(1.4);
    } else if (event.key === "0") {
      state.view = {start: 0, stop: state.T};
      scheduleRange();
    }
  });

  $("zoom-in").addEventListener("click", () => zoom(1 / 1.4));
  $("zoom-out").addEventListener("click", () => zoom(1.4));
  $("zoom-all").addEventListener("click", () => { state.view = {start: 0, stop: state.T}; scheduleRange(); });
  $("feature-select").addEventListener("change", (event) => {
    state.feature = event.target.value;
    event.target.blur();
    loadRange().catch((e) => showError(e.message));
  });
  window.addEventListener("resize", () => { if (state.meta) scheduleRange(); });
  window.addEventListener("hashchange", () => {
    const wanted = parseHash();
    if (wanted.video && wanted.video !== state.videoId) openVideo(wanted.video, wanted.frame || 0).catch((e) => showError(e.message));
    else if (wanted.frame !== undefined && wanted.frame !== state.playhead) setPlayhead(wanted.frame);
  });

  function parseHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [key, value] = part.split("=");
      if (key === "video" && value) out.video = decodeURIComponent(value);
      if (key === "frame" && value) out.frame = parseInt(value, 10);
    }
    return out;
  }

  // ---------------------------------------------------------------- start
  async function start() {
    state.source = window.affectsyncStatic ? new StaticSource(window.affectsyncStatic) : new ServerSource();
    state.index = await state.source.index();
    renderVideoList();
    if (!state.index.videos.length) { showError("the store holds no video"); return; }
    const wanted = parseHash();
    const known = state.index.videos.map((v) => v.video_id);
    const first = state.index.videos.find((v) => v.complete) || state.index.videos[0];
    await openVideo(known.includes(wanted.video) ? wanted.video : first.video_id, wanted.frame || 0);
    document.body.dataset.ready = "true";
  }

  window.affectsyncViewer = {state};
  start().catch((error) => showError(error.message));
})();
