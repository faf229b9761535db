// The page: loads model.onnx, reads its contract from the file, starts ONNX Runtime Web (WebGPU where the
// browser has it, else WebAssembly with SIMD, on several threads when the page is cross-origin isolated) and
// classifies dropped images or the camera. Pixels go through preprocess.mjs, edgecnn's imaging rules.
import * as ort from "./ort/ort.webgpu.min.mjs";
import { inputSpec, readContract, toInput, topK } from "./preprocess.mjs";

const TOP_K = 5;
const $ = (id) => document.getElementById(id);
const state = { session: null, contract: null, spec: null, backend: "", decoded: [], cameraOn: false };
// What the page computed, for scripts that drive it (the tests read these).
window.edgecnnResults = [];

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function wasmOptions() {
  const isolated = self.crossOriginIsolated === true;
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  ort.env.wasm.numThreads = isolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
  ort.env.wasm.simd = true;
  return { isolated, threads: ort.env.wasm.numThreads };
}

async function hasWebGPU() {
  if (!navigator.gpu) return false;
  try {
    return (await navigator.gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

async function startSession(bytes) {
  const asked = new URLSearchParams(location.search).get("backend");
  const { isolated, threads } = wasmOptions();
  const order = asked ? [asked] : (await hasWebGPU()) ? ["webgpu", "wasm"] : ["wasm"];
  let lastError = null;
  for (const backend of order) {
    try {
      const session = await ort.InferenceSession.create(bytes, { executionProviders: [backend] });
      const wasm = `WebAssembly, SIMD, ${threads} thread${threads > 1 ? "s" : ""}${isolated ? " (cross-origin isolated)" : " (not cross-origin isolated)"}`;
      return { session, backend, label: backend === "wasm" ? wasm : backend === "webgpu" ? "WebGPU" : backend };
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`no ONNX Runtime Web backend starts here (${order.join(", ")}): ${lastError}`);
}

async function classifyPixels(rgba, width, height) {
  const { spec, session } = state;
  const input = toInput(rgba, width, height, spec);
  const tensor = new ort.Tensor("float32", input, [1, spec.height, spec.width, spec.channels]);
  const outputs = await session.run({ [session.inputNames[0]]: tensor });
  return Float32Array.from(outputs[session.outputNames[0]].data);
}

function showTop(probs) {
  const list = $("top");
  list.replaceChildren();
  for (const i of topK(probs, TOP_K)) {
    const item = document.createElement("li");
    item.textContent = `${state.contract.labels[i]} ${(probs[i] * 100).toFixed(1)}%`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(probs[i] * 100).toFixed(1)}%`;
    item.append(bar);
    list.append(item);
  }
}

// A file as the Python decoder gives it: upright from EXIF, no colour management, alpha over white.
async function decodeFile(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { name: file.name, width: canvas.width, height: canvas.height, rgba: context.getImageData(0, 0, canvas.width, canvas.height).data };
}

async function classifyFiles(files) {
  const rows = $("files-table").tBodies[0];
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    let image;
    try {
      image = await decodeFile(file);
    } catch (error) {
      status(`${file.name}: cannot decode image (${error.message || error})`, true);
      continue;
    }
    const probs = await classifyPixels(image.rgba, image.width, image.height);
    state.decoded.push(image);
    window.edgecnnResults.push({ name: file.name, probabilities: Array.from(probs) });
    const best = topK(probs, 1)[0];
    const row = rows.insertRow();
    for (const text of [file.name, state.contract.labels[best], `${(probs[best] * 100).toFixed(1)}%`]) row.insertCell().textContent = text;
    $("files-table").hidden = false;
    $("still").src = URL.createObjectURL(file);
    $("still").hidden = false;
    $("camera").hidden = true;
    $("source").textContent = file.name;
    showTop(probs);
  }
  status(`${window.edgecnnResults.length} image(s) classified`);
}

async function startCamera() {
  if (state.cameraOn) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    status(`cannot open the camera (${error.name}: ${error.message})`, true);
    return;
  }
  state.cameraOn = true;
  const video = $("camera");
  video.srcObject = stream;
  video.hidden = false;
  $("still").hidden = true;
  await video.play();
  const canvas = new OffscreenCanvas(1, 1);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const times = [];
  $("source").textContent = "camera";
  for (;;) {
    if (video.readyState >= 2 && video.videoWidth > 0) {
      const { videoWidth: w, videoHeight: h } = video;
      if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
      context.drawImage(video, 0, 0, w, h);
      const probs = await classifyPixels(context.getImageData(0, 0, w, h).data, w, h);
      showTop(probs);
      const now = performance.now();
      times.push(now);
      while (times.length && now - times[0] > 2000) times.shift();
      if (times.length > 1) $("fps").textContent = ((1000 * (times.length - 1)) / (now - times[0])).toFixed(1);
      document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

/** Images per second of this page on the images classified so far: preprocessing and inference, one at a time. */
async function benchmark(seconds = 5) {
  if (!state.decoded.length) throw new Error("classify some images first");
  await classifyPixels(state.decoded[0].rgba, state.decoded[0].width, state.decoded[0].height);
  let count = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const image = state.decoded[count % state.decoded.length];
    await classifyPixels(image.rgba, image.width, image.height);
    count++;
  }
  const elapsed = (performance.now() - start) / 1000;
  return { images: count, seconds: elapsed, imagesPerSecond: count / elapsed, backend: state.backend };
}

function wireInputs() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classifyFiles([...event.dataTransfer.files]);
  });
  $("files").addEventListener("change", (event) => classifyFiles([...event.target.files]));
  $("start-camera").addEventListener("click", () => startCamera());
}

async function main() {
  wireInputs();
  try {
    status("loading the model...");
    const response = await fetch("model.onnx");
    if (!response.ok) throw new Error(`cannot load model.onnx (HTTP ${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    state.contract = readContract(bytes);
    state.spec = inputSpec(state.contract);
    const { session, backend, label } = await startSession(bytes);
    Object.assign(state, { session, backend });
    const { spec, contract } = state;
    $("model-name").textContent = contract.arch ? `(${contract.arch})` : "";
    $("facts").textContent = `${contract.labels.length} labels; input ${spec.width}x${spec.height}x${spec.channels}, resize ${spec.resize}, fit ${spec.fit}`;
    $("backend").textContent = label;
    document.body.dataset.backend = backend;
    window.edgecnnPage = { benchmark, contract, backend };
    status("ready: drop images or start the camera");
    document.body.dataset.ready = "true";
  } catch (error) {
    status(String(error.message || error), true);
    document.body.dataset.ready = "error";
  }
}

main();
