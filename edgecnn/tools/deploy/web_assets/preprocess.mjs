// The model's contract, read from the .onnx file, and the pixels it asks for: edgecnn's imaging rules
// (edgecnn/core/imaging.py and resizing.py) in plain JavaScript, so the page feeds the model what the Python
// predictor feeds it. Shrinking by area is computed exactly (as resizing.shrink_area does); enlarging by area,
// INTER_LINEAR and INTER_CUBIC are reproduced as OpenCV computes them for 8-bit images (11-bit fixed-point
// coefficients), and the three fits (stretch, crop, letterbox) as resizing.py does. No DOM here: node runs
// this module in the tests.

export const METADATA_KEY = "edgecnn";
export const RESIZES = ["area", "linear", "cubic"];
export const FITS = ["stretch", "crop", "letterbox"];
const DEFAULT_CROP_FRACTION = 0.875;
const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;

// ---- the contract -------------------------------------------------------------------------------------

function readVarint(bytes, pos) {
  let value = 0;
  let shift = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error("truncated ONNX file");
    const b = bytes[pos++];
    value += (b & 0x7f) * shift;
    if (b < 0x80) return [value, pos];
    shift *= 128;
  }
}

// Walk one protobuf message, calling visit(field, wireType, start, end) for each length-delimited field.
function eachField(bytes, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) [, pos] = readVarint(bytes, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > end) throw new Error("truncated ONNX file");
      visit(field, pos, pos + length);
      pos += length;
    } else throw new Error(`not an ONNX file (protobuf wire type ${wire})`);
  }
}

/** The metadata_props of an ONNX ModelProto (field 14: key = 1, value = 2), as an object. */
export function onnxMetadata(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const metadata = {};
  eachField(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    const entry = {};
    eachField(bytes, start, end, (inner, s, e) => {
      if (inner === 1) entry.key = decoder.decode(bytes.subarray(s, e));
      if (inner === 2) entry.value = decoder.decode(bytes.subarray(s, e));
    });
    if (entry.key !== undefined) metadata[entry.key] = entry.value ?? "";
  });
  return metadata;
}

/** The edgecnn contract of a model file, checked for what this page can reproduce. */
export function readContract(buffer) {
  const text = onnxMetadata(buffer)[METADATA_KEY];
  if (text === undefined) throw new Error("not an edgecnn model (no 'edgecnn' metadata); re-export it with `edgecnn export`");
  const contract = JSON.parse(text);
  const input = contract.input || {};
  if (!Array.isArray(contract.labels) || !contract.labels.length) throw new Error("the contract has no labels");
  if (!RESIZES.includes(input.resize ?? "area")) throw new Error(`resize ${input.resize} is not implemented in the page (${RESIZES.join(", ")})`);
  if (!FITS.includes(input.fit ?? "stretch")) throw new Error(`fit ${input.fit} is not implemented in the page (${FITS.join(", ")})`);
  if ((input.layout ?? "NHWC") !== "NHWC" || (input.dtype ?? "float32") !== "float32") throw new Error("the page feeds NHWC float32 input only");
  return contract;
}

/** The input block with the defaults the Python side applies (resizing.py, contract.py). */
export function inputSpec(contract) {
  const input = contract.input;
  const fit = input.fit ?? "stretch";
  return {
    height: input.height,
    width: input.width,
    channels: input.channels ?? 3,
    resize: input.resize ?? "area",
    fit,
    cropFraction: fit === "crop" ? (input.crop_fraction ?? DEFAULT_CROP_FRACTION) : null,
    padValue: fit === "letterbox" ? (input.pad_value ?? 0) : null,
  };
}

// ---- images -------------------------------------------------------------------------------------------

/** An image: {width, height, channels, data: Uint8Array (H * W * C)}. */
export function makeImage(width, height, channels, data) {
  return { width, height, channels, data: data ?? new Uint8Array(width * height * channels) };
}

/** RGBA pixels (a canvas's ImageData, already over white) to RGB, or to grey with OpenCV's RGB2GRAY. */
export function fromRGBA(rgba, width, height, channels) {
  const out = makeImage(width, height, channels);
  const n = width * height;
  if (channels === 3) {
    for (let i = 0; i < n; i++) {
      out.data[3 * i] = rgba[4 * i];
      out.data[3 * i + 1] = rgba[4 * i + 1];
      out.data[3 * i + 2] = rgba[4 * i + 2];
    }
  } else {
    for (let i = 0; i < n; i++) {
      // cv2.COLOR_RGB2GRAY on 8-bit data: 14-bit fixed-point weights, rounded.
      out.data[i] = (rgba[4 * i] * 4899 + rgba[4 * i + 1] * 9617 + rgba[4 * i + 2] * 1868 + 8192) >> 14;
    }
  }
  return out;
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const clamp8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

// INTER_AREA when shrinking on both axes, computed exactly as core/resizing.py's shrink_area does: each
// output pixel is the mean of the source pixels it covers, weighted by how much of each it covers, rounded
// half up. The weights are integers (in units of 1/dst of a source pixel), so every sum is exact in a double.
function overlaps(src, dst) {
  const table = [];
  for (let d = 0; d < dst; d++) {
    const lo = d * src;
    const hi = lo + src;
    const taps = [];
    for (let s = Math.floor(lo / dst); s * dst < hi; s++) {
      taps.push([s, Math.min((s + 1) * dst, hi) - Math.max(s * dst, lo)]);
    }
    table.push(taps);
  }
  return table;
}

function resizeArea(img, width, height) {
  const { channels: cn, data } = img;
  const out = makeImage(width, height, cn);
  const xt = overlaps(img.width, width);
  const yt = overlaps(img.height, height);
  const area = img.width * img.height; // the weights of one output pixel sum to this
  const acc = new Float64Array(width * cn);
  for (let y = 0; y < height; y++) {
    acc.fill(0);
    for (const [sy, wy] of yt[y]) {
      const row = sy * img.width;
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < cn; c++) {
          let sum = 0;
          for (const [sx, wx] of xt[x]) sum += data[(row + sx) * cn + c] * wx;
          acc[x * cn + c] += sum * wy;
        }
      }
    }
    for (let k = 0; k < acc.length; k++) {
      const q = Math.floor(acc[k] / area);
      out.data[y * width * cn + k] = q + (2 * (acc[k] - q * area) >= area ? 1 : 0);
    }
  }
  return out;
}

function cubicCoefficients(x) {
  const A = -0.75;
  const c0 = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  const c1 = ((A + 2) * x - (A + 3)) * x * x + 1;
  const c2 = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  return [c0, c1, c2, 1 - c0 - c1 - c2].map(Math.fround);
}

// One axis of OpenCV's separable linear/cubic resize: for each output index, the source indexes (clamped:
// BORDER_REPLICATE) and the 11-bit fixed-point weights. INTER_AREA when enlarging uses OpenCV's own linear
// coefficients ("area" mode of the same code).
function axisTaps(src, dst, method) {
  const scale = src / dst;
  const inv = dst / src;
  const taps = [];
  for (let d = 0; d < dst; d++) {
    let s;
    let f;
    if (method === "area") {
      s = Math.floor(d * scale);
      f = Math.fround(d + 1 - (s + 1) * inv);
      f = f <= 0 ? 0 : f - Math.floor(f);
    } else {
      const fx = Math.fround((d + 0.5) * scale - 0.5);
      s = Math.floor(fx);
      f = Math.fround(fx - s);
    }
    let weights;
    let first;
    if (method === "cubic") {
      weights = cubicCoefficients(f);
      first = s - 1;
    } else {
      if (s < 0) {
        f = 0;
        s = 0;
      }
      if (s >= src - 1) {
        f = 0;
        s = src - 1;
      }
      weights = [1 - f, f];
      first = s;
    }
    const idx = weights.map((_, k) => Math.min(Math.max(first + k, 0), src - 1));
    taps.push([idx, weights.map((w) => roundHalfEven(w * COEF_SCALE))]);
  }
  return taps;
}

function resizeSeparable(img, width, height, method) {
  const { channels: cn, data } = img;
  const xt = axisTaps(img.width, width, method);
  const yt = axisTaps(img.height, height, method);
  const rows = new Map(); // source row -> horizontally resized row (integers, scaled by COEF_SCALE)
  const hrow = (sy) => {
    let row = rows.get(sy);
    if (row) return row;
    row = new Float64Array(width * cn);
    const base = sy * img.width;
    for (let x = 0; x < width; x++) {
      const [idx, w] = xt[x];
      for (let c = 0; c < cn; c++) {
        let s = 0;
        for (let k = 0; k < idx.length; k++) s += data[(base + idx[k]) * cn + c] * w[k];
        row[x * cn + c] = s;
      }
    }
    rows.set(sy, row);
    return row;
  };
  const out = makeImage(width, height, cn);
  const shift = COEF_SCALE * COEF_SCALE;
  for (let y = 0; y < height; y++) {
    const [idx, w] = yt[y];
    const srcRows = idx.map(hrow);
    for (let k = 0; k < width * cn; k++) {
      let v;
      if (srcRows.length === 2) {
        // OpenCV's vectorised two-tap vertical pass: 16-bit products of the rows shifted by 4, rounded by 2 bits.
        const a = Math.floor((srcRows[0][k] >> 4) * w[0] / 65536);
        const b = Math.floor((srcRows[1][k] >> 4) * w[1] / 65536);
        v = (a + b + 2) >> 2;
      } else {
        let s = 0;
        for (let j = 0; j < srcRows.length; j++) s += srcRows[j][k] * w[j];
        v = Math.floor((s + shift / 2) / shift);
      }
      out.data[y * width * cn + k] = clamp8(v);
    }
  }
  return out;
}

/** cv2.resize(image, (width, height), interpolation) for uint8 images. */
export function resizeTo(img, width, height, method) {
  if (img.width === width && img.height === height) return img;
  if (method === "area" && img.width >= width && img.height >= height) return resizeArea(img, width, height);
  return resizeSeparable(img, width, height, method === "cubic" ? "cubic" : method === "area" ? "area" : "linear");
}

function crop(img, top, left, height, width) {
  const out = makeImage(width, height, img.channels);
  const cn = img.channels;
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * cn;
    out.data.set(img.data.subarray(from, from + width * cn), y * width * cn);
  }
  return out;
}

/** resizing.center_crop: the largest centred region whose width / height is aspect. */
export function centerCrop(img, aspect) {
  const { width: w, height: h } = img;
  if (w / h > aspect) {
    const nw = Math.max(1, roundHalfEven(h * aspect));
    return crop(img, 0, Math.floor((w - nw) / 2), h, nw);
  }
  const nh = Math.max(1, roundHalfEven(w / aspect));
  return crop(img, Math.floor((h - nh) / 2), 0, nh, w);
}

function scaleAndCrop(img, spec) {
  const aspect = spec.width / spec.height;
  if (img.width / img.height > 4 * aspect) img = centerCrop(img, 4 * aspect);
  else if (img.height / img.width > 4 / aspect) img = centerCrop(img, aspect / 4);
  const { width: w, height: h } = img;
  let nw;
  let nh;
  if (spec.height / h >= spec.width / w) {
    nh = roundHalfEven(spec.height / spec.cropFraction);
    nw = Math.floor((w * nh) / h);
  } else {
    nw = roundHalfEven(spec.width / spec.cropFraction);
    nh = Math.floor((h * nw) / w);
  }
  const scaled = resizeTo(img, Math.max(nw, spec.width), Math.max(nh, spec.height), spec.resize);
  const top = roundHalfEven((scaled.height - spec.height) / 2);
  const left = roundHalfEven((scaled.width - spec.width) / 2);
  return crop(scaled, top, left, spec.height, spec.width);
}

function letterbox(img, spec) {
  const scale = Math.min(spec.height / img.height, spec.width / img.width);
  const nh = Math.min(spec.height, Math.max(1, roundHalfEven(img.height * scale)));
  const nw = Math.min(spec.width, Math.max(1, roundHalfEven(img.width * scale)));
  const scaled = resizeTo(img, nw, nh, spec.resize);
  if (nh === spec.height && nw === spec.width) return scaled;
  const out = makeImage(spec.width, spec.height, img.channels);
  out.data.fill(spec.padValue);
  const top = Math.floor((spec.height - nh) / 2);
  const left = Math.floor((spec.width - nw) / 2);
  const cn = img.channels;
  for (let y = 0; y < nh; y++) out.data.set(scaled.data.subarray(y * nw * cn, (y + 1) * nw * cn), ((top + y) * spec.width + left) * cn);
  return out;
}

/** resizing.resize: the spec's fit and interpolation. */
export function fitImage(img, spec) {
  if (spec.fit === "crop") return scaleAndCrop(img, spec);
  if (spec.fit === "letterbox") return letterbox(img, spec);
  return resizeTo(img, spec.width, spec.height, spec.resize);
}

/** RGBA pixels over white -> the model's float32 NHWC input (raw 0-255 values), as imaging.image_to_input. */
export function toInput(rgba, width, height, spec) {
  const fitted = fitImage(fromRGBA(rgba, width, height, spec.channels), spec);
  return Float32Array.from(fitted.data);
}

/** Indexes of the k largest probabilities, largest first. */
export function topK(probs, k) {
  return Array.from(probs.keys())
    .sort((a, b) => probs[b] - probs[a] || a - b)
    .slice(0, k);
}
