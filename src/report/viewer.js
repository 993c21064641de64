// cortexflow report: each atom's slice viewer, colour bar and glass brain, drawn from the
// grid JSON and the figure's z map (src/report/viewer.rs). Orientation as the PNG figures:
// world coordinates increase to the right and upwards (left hemisphere on the left).
(() => {
  const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const grids = {};
  const PANELS = [
    { u: 1, v: 2, fixed: 0, name: "sagittal", ends: ["P", "A", "I", "S"] },
    { u: 0, v: 2, fixed: 1, name: "coronal", ends: ["L", "R", "I", "S"] },
    { u: 0, v: 1, fixed: 2, name: "axial", ends: ["L", "R", "P", "A"] },
  ];
  const AXIS = ["x", "y", "z"];
  const OUTLINE = [0, 158, 115];

  function grid(id) {
    if (grids[id]) return grids[id];
    const g = JSON.parse(document.getElementById(id).textContent);
    const [nx, ny, nz] = g.shape;
    g.bg = bytes(g.background);
    g.index = new Int32Array(nx * ny * nz).fill(-1);
    new Uint32Array(bytes(g.mask).buffer).forEach((l, v) => (g.index[l] = v));
    g.net = new Uint16Array(bytes(g.network).buffer);
    g.flip = [0, 1, 2].map((r) => g.affine[r * 4 + r] < 0);
    g.scale = Math.max(2, Math.floor(220 / Math.max(nx, ny, nz)));
    return (grids[id] = g);
  }

  const linear = (g, [i, j, k]) => i + g.shape[0] * (j + g.shape[1] * k);
  const world = (g, ijk) => [0, 1, 2].map((r) => g.affine[r * 4] * ijk[0] + g.affine[r * 4 + 1] * ijk[1] + g.affine[r * 4 + 2] * ijk[2] + g.affine[r * 4 + 3]);
  // Display column/row of an index along axis `a` (rows counted upwards).
  const shown = (g, a, i) => (g.flip[a] ? g.shape[a] - 1 - i : i);

  // Warm (dark red → yellow) for positive, cool (dark blue → cyan) for negative, as the PNGs.
  function colour(v, vmax) {
    const f = Math.min(1, Math.max(0, Math.abs(v) / Math.max(vmax, 1e-6)));
    const ramp = (a, b) => Math.floor(a + (b - a) * f);
    return v > 0 ? [ramp(180, 255), ramp(20, 240), ramp(0, 60)] : [ramp(0, 60), ramp(40, 230), ramp(180, 255)];
  }

  function element(tag, cls, parent, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }

  function viewer(fig) {
    const g = grid(fig.dataset.grid);
    const z = new Float32Array(bytes(fig.dataset.z).buffer);
    const vmax = +fig.dataset.vmax;
    const outline = +fig.dataset.outline;
    const quantity = fig.dataset.label || "value";
    const state = { cut: fig.dataset.cut.split(",").map(Number), thr: +fig.dataset.threshold };
    const s = g.scale;
    const value = (l) => (g.index[l] >= 0 ? z[g.index[l]] : NaN);
    const shows = (x) => Number.isFinite(x) && x !== 0 && Math.abs(x) >= state.thr;
    const caption = fig.querySelector("figcaption");
    const box = document.createElement("div");
    fig.insertBefore(box, caption);

    const row = element("div", "vrow", box);
    const panels = PANELS.map((p) => {
      const wrap = element("div", "panel", row);
      const title = element("div", "ptitle", wrap);
      const canvas = element("canvas", p.name, wrap);
      canvas.width = g.shape[p.u] * s;
      canvas.height = g.shape[p.v] * s;
      canvas.addEventListener("click", (e) => {
        const r = canvas.getBoundingClientRect();
        // Clamped: the canvas's edge may sit at a fractional pixel of the page.
        const clamp = (x, n) => Math.min(n - 1, Math.max(0, x));
        const pu = clamp(Math.floor(((e.clientX - r.left) * canvas.width) / r.width / s), g.shape[p.u]);
        const pv = clamp(g.shape[p.v] - 1 - Math.floor(((e.clientY - r.top) * canvas.height) / r.height / s), g.shape[p.v]);
        state.cut[p.u] = shown(g, p.u, pu);
        state.cut[p.v] = shown(g, p.v, pv);
        draw();
      });
      return { ...p, title, canvas };
    });
    const bar = element("canvas", "colourbar", row);
    bar.width = 120;
    bar.height = g.shape[2] * s;

    const controls = element("div", "vcontrols", box);
    const label = element("label", "", controls, `threshold |${quantity}| ≥ `);
    const slider = element("input", "threshold", label);
    Object.assign(slider, { type: "range", min: 0, max: vmax, step: "any", value: state.thr });
    const thrText = element("span", "thr", label);
    const count = element("span", "count", controls);
    slider.addEventListener("input", () => {
      state.thr = +slider.value;
      draw();
    });
    const readout = element("output", "readout", box);

    element("div", "gtitle", box, `glass brain: the largest |${quantity}| above the threshold along each axis`);
    const glassRow = element("div", "vrow glass", box);
    const glass = PANELS.map((p) => {
      const canvas = element("canvas", "glass-" + p.name, glassRow);
      canvas.width = g.shape[p.u] * s;
      canvas.height = g.shape[p.v] * s;
      return { ...p, canvas };
    });

    function paint(canvas, p, pixel) {
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(canvas.width, canvas.height);
      for (let pu = 0; pu < g.shape[p.u]; pu++) {
        for (let pv = 0; pv < g.shape[p.v]; pv++) {
          const rgb = pixel(shown(g, p.u, pu), shown(g, p.v, pv), pu, pv);
          const y0 = (g.shape[p.v] - 1 - pv) * s;
          for (let dy = 0; dy < s; dy++) {
            for (let dx = 0; dx < s; dx++) {
              const o = 4 * ((y0 + dy) * canvas.width + pu * s + dx);
              img.data[o] = rgb[0];
              img.data[o + 1] = rgb[1];
              img.data[o + 2] = rgb[2];
              img.data[o + 3] = 255;
            }
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      return ctx;
    }

    // The ends of the two axes (L/R, P/A, I/S): light on the slices, dark on the glass.
    function ends(ctx, canvas, [left, right, bottom, top], light) {
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillStyle = light ? "#fff" : "#333";
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 3;
      const label = (t, x, y) => (light && ctx.strokeText(t, x, y), ctx.fillText(t, x, y));
      label(left, 3, canvas.height / 2 + 4);
      label(right, canvas.width - 11, canvas.height / 2 + 4);
      label(bottom, canvas.width / 2 - 3, canvas.height - 4);
      label(top, canvas.width / 2 - 3, 13);
    }

    function inNetwork(ijk) {
      const v = g.index[linear(g, ijk)];
      return v >= 0 && g.net[v] === outline;
    }

    function slice(p) {
      const ctx = paint(p.canvas, p, (iu, iv) => {
        const ijk = [0, 0, 0];
        ijk[p.u] = iu;
        ijk[p.v] = iv;
        ijk[p.fixed] = state.cut[p.fixed];
        const l = linear(g, ijk);
        const x = value(l);
        return shows(x) ? colour(x, vmax) : [g.bg[l], g.bg[l], g.bg[l]];
      });
      if (outline >= 0) {
        // The network's border: voxels in it with an in-plane neighbour outside it.
        ctx.fillStyle = `rgb(${OUTLINE})`;
        for (let iu = 0; iu < g.shape[p.u]; iu++) {
          for (let iv = 0; iv < g.shape[p.v]; iv++) {
            const ijk = [0, 0, 0];
            ijk[p.u] = iu;
            ijk[p.v] = iv;
            ijk[p.fixed] = state.cut[p.fixed];
            if (!inNetwork(ijk)) continue;
            const x0 = shown(g, p.u, iu) * s;
            const y0 = (g.shape[p.v] - 1 - shown(g, p.v, iv)) * s;
            for (const [du, dv] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
              const n = ijk.slice();
              n[p.u] += g.flip[p.u] ? -du : du;
              n[p.v] += g.flip[p.v] ? -dv : dv;
              const off = n[p.u] < 0 || n[p.v] < 0 || n[p.u] >= g.shape[p.u] || n[p.v] >= g.shape[p.v];
              if (!off && inNetwork(n)) continue;
              if (du) ctx.fillRect(du > 0 ? x0 + s - 1 : x0, y0, 1, s);
              else ctx.fillRect(x0, dv > 0 ? y0 : y0 + s - 1, s, 1);
            }
          }
        }
      }
      // The cross-hair through the cut.
      const cx = shown(g, p.u, state.cut[p.u]) * s + s / 2;
      const cy = (g.shape[p.v] - 1 - shown(g, p.v, state.cut[p.v])) * s + s / 2;
      ctx.strokeStyle = "rgba(255,255,255,.75)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(cx, 0);
      ctx.lineTo(cx, p.canvas.height);
      ctx.moveTo(0, cy);
      ctx.lineTo(p.canvas.width, cy);
      ctx.stroke();
      ends(ctx, p.canvas, p.ends, true);
      const w = world(g, state.cut)[p.fixed];
      p.title.textContent = `${p.name}, ${AXIS[p.fixed]} = ${w.toFixed(0)} mm`;
    }

    // Maximum-intensity projection along `fixed`: the signed value of largest |z|
    // among those shown, over the brain's silhouette.
    function projection(p) {
      const ctx = paint(p.canvas, p, (iu, iv) => {
        const ijk = [0, 0, 0];
        ijk[p.u] = iu;
        ijk[p.v] = iv;
        let best = 0;
        let brain = false;
        for (let t = 0; t < g.shape[p.fixed]; t++) {
          ijk[p.fixed] = t;
          const l = linear(g, ijk);
          if (g.index[l] < 0) continue;
          brain = true;
          const x = value(l);
          if (shows(x) && Math.abs(x) > Math.abs(best)) best = x;
        }
        return best !== 0 ? colour(best, vmax) : brain ? [225, 225, 225] : [255, 255, 255];
      });
      ends(ctx, p.canvas, p.ends, false);
    }

    function colourBar() {
      const ctx = bar.getContext("2d");
      const h = bar.height;
      const top = 10;
      const bottom = h - 10;
      ctx.clearRect(0, 0, bar.width, h);
      for (let y = top; y <= bottom; y++) {
        const v = vmax - ((y - top) / (bottom - top)) * 2 * vmax;
        ctx.fillStyle = Math.abs(v) >= state.thr && v !== 0 ? `rgb(${colour(v, vmax)})` : "#ccc";
        ctx.fillRect(8, y, 18, 1);
      }
      ctx.fillStyle = "#222";
      ctx.font = "12px system-ui, sans-serif";
      const at = (v) => top + ((vmax - v) / (2 * vmax)) * (bottom - top);
      const ticks = [vmax, state.thr, 0, -state.thr, -vmax];
      ticks.forEach((v, n) => {
        if (n > 0 && Math.abs(at(v) - at(ticks[n - 1])) < 12) return;
        ctx.fillRect(26, at(v), 5, 1);
        ctx.fillText(v.toFixed(2), 34, at(v) + 4);
      });
      ctx.save();
      ctx.translate(bar.width - 6, h / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.fillText(quantity, 0, 0);
      ctx.restore();
    }

    function draw() {
      panels.forEach(slice);
      glass.forEach(projection);
      colourBar();
      thrText.textContent = state.thr.toFixed(2);
      let n = 0;
      z.forEach((x) => (n += shows(x) ? 1 : 0));
      count.textContent = `${n} voxels shown`;
      count.dataset.voxels = n;
      const [x, y, w] = world(g, state.cut);
      const l = linear(g, state.cut);
      const v = g.index[l];
      const network = g.networks.length ? ` · network ${g.net[v] === 65535 ? "none" : g.networks[g.net[v]]}` : "";
      const what = v < 0 ? "outside the mask" : `${quantity} ${value(l).toFixed(3)}${network}`;
      readout.textContent = `MNI (x, y, z) = (${x.toFixed(1)}, ${y.toFixed(1)}, ${w.toFixed(1)}) mm · voxel [${state.cut.join(", ")}] · ${what}`;
    }

    draw();
    fig.dataset.drawn = "1";
  }

  document.querySelectorAll("figure.viewer").forEach((fig) => {
    try {
      viewer(fig);
    } catch (e) {
      // Said in the figure and to the console; the page's figure check reports it broken.
      fig.dataset.drawn = "error: " + e;
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "This map could not be drawn: " + e;
      fig.insertBefore(note, fig.firstChild);
      setTimeout(() => {
        throw e;
      });
    }
  });
})();
