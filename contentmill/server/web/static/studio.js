// The studio page: start a video, follow its steps and their cost, play it, edit a scene (docs/web.md).
// The run's id is kept in the address (#run=<id>), so a reload finds the run where it is; the run itself goes
// on in the server whether or not this page stays open.
"use strict";

(function () {
  const FINAL = ["done", "failed", "interrupted"];
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("studio-data").textContent);
  let polling = null;
  let shownVideo = null;

  function usd(value) { return (value || 0).toFixed(6); }

  async function call(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (answer.error && answer.error.message) || `the server answered ${response.status}`;
      throw new Error(message);
    }
    return answer;
  }

  function showError(message) {
    const box = $("form-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function fillVoices() {
    const voices = data.voices[$("speech_model").value] || ["default"];
    const select = $("voice");
    select.replaceChildren(...voices.map((name) => new Option(name, name)));
  }

  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([name, value]) => node.setAttribute(name, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderRun(run) {
    const box = $("run");
    box.dataset.state = run.state;
    box.dataset.run = run.id;
    const title = el("p", { class: "run-title" });
    title.append(el("strong", {}, run.title || run.topic), ` · ${run.state}`);
    const list = el("ol", { class: "steps" });
    for (const step of run.steps) {
      const item = el("li", { "data-testid": `step-${step.step}`, "data-state": step.state || "waiting" });
      item.append(el("span", { class: "name" }, step.step));
      item.append(el("span", { class: "detail" }, step.detail || (step.state === "waiting" ? "waiting" : "")));
      const cost = step.cached ? `reused (saved $${usd(step.saved_usd)})` : `$${usd(step.cost_usd)}`;
      item.append(el("span", { class: "cost" }, step.state === "done" ? cost : ""));
      list.append(item);
    }
    const total = el("p", { class: "total" });
    total.append("Cost of this run: ", el("strong", { "data-testid": "run-cost" }, `$${usd(run.cost_usd)}`));
    if (run.saved_usd) total.append(` (reuse saved $${usd(run.saved_usd)})`);
    const parts = [title, list, total];
    if (run.error) parts.push(el("p", { class: "error", role: "alert", "data-testid": "run-error" }, run.error));
    if (run.state === "interrupted" || run.state === "failed") {
      const again = el("button", { type: "button", class: "quiet", "data-testid": "run-again" }, "Start it again");
      again.addEventListener("click", () => post(`/studio/runs/${encodeURIComponent(run.id)}/again`, {}));
      parts.push(again);
    }
    box.replaceChildren(...parts);
    if (run.state === "done" && run.media.video) showResult(run);
    else $("result").hidden = true;
  }

  function showResult(run) {
    $("result").hidden = false;
    const player = $("player");
    if (shownVideo !== run.media.video) {
      shownVideo = run.media.video;
      player.src = run.media.video;
      player.load();
    }
    $("dl-video").href = `${run.media.video}?download=1`;
    $("dl-subtitles").href = `${run.media.subtitles}?download=1`;
    $("dl-script").href = `${run.media.script}?download=1`;
    const audio = $("dl-audio");
    audio.replaceChildren("Audio:");
    (run.media.audio || []).forEach((url, index) => {
      audio.append(" ", el("a", { href: `${url}?download=1`, download: "" }, `scene ${index + 1}`));
    });
    loadScenes(run);
  }

  async function loadScenes(run) {
    const form = $("edit-form");
    if (form.dataset.run === run.id) return;
    form.dataset.run = run.id;
    try {
      const response = await fetch(run.media.script, { credentials: "same-origin" });
      const script = await response.json();
      const select = $("scene");
      select.replaceChildren(...script.scenes.map((scene, index) => new Option(`${index + 1}: ${scene.on_screen_text || ""}`, String(index + 1))));
      const pick = () => { $("narration").value = script.scenes[Number(select.value) - 1].narration; };
      select.onchange = pick;
      pick();
    } catch (error) {
      form.dataset.run = "";
    }
  }

  async function follow(id) {
    if (polling) clearTimeout(polling);
    polling = null;
    try {
      const run = await call("GET", `/studio/runs/${encodeURIComponent(id)}`);
      renderRun(run);
      refreshPast(run);
      if (!FINAL.includes(run.state)) polling = setTimeout(() => follow(id), POLL_MS);
    } catch (error) {
      $("run").replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  }

  function refreshPast(run) {
    let row = document.querySelector(`#past tr[data-run="${run.id}"]`);
    if (!row) {
      document.querySelector("#past tr.empty")?.remove();
      row = el("tr", { "data-run": run.id });
      for (let i = 0; i < 6; i += 1) row.append(el("td"));
      row.children[0].textContent = run.created_at.slice(0, 16).replace("T", " ");
      row.children[2].className = "num";
      row.children[4].className = "num";
      row.children[5].append(el("a", { href: `#run=${run.id}` }, "open"));
      $("past").prepend(row);
    }
    row.children[1].textContent = run.title || run.topic;
    row.children[2].textContent = run.duration_s ? `${run.duration_s.toFixed(1)} s` : "";
    row.children[3].textContent = run.state;
    row.children[4].textContent = usd(run.cost_usd);
  }

  function currentRun() {
    const match = /run=([0-9a-f]+)/.exec(window.location.hash);
    return match ? match[1] : null;
  }

  // Starts a run (a new one, one started again, or a scene edit) and follows it.
  async function post(url, body) {
    showError("");
    $("start").disabled = true;
    try {
      const run = await call("POST", url, body);
      window.location.hash = `run=${run.id}`;
    } catch (error) {
      showError(error.message);
    } finally {
      $("start").disabled = false;
    }
  }

  $("studio-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(event.target).entries());
    if (!fields.topic || !fields.topic.trim()) {
      showError("Type a topic: what the video is about.");
      return;
    }
    post("/studio/runs", fields);
  });

  $("edit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("run").dataset.run;
    post(`/studio/runs/${encodeURIComponent(id)}/edit`, { scene_edits: { [$("scene").value]: $("narration").value } });
  });

  $("speech_model").addEventListener("change", fillVoices);
  $("voice-sample").addEventListener("click", () => {
    const params = new URLSearchParams({
      model: $("speech_model").value, voice: $("voice").value, language: $("language").value,
    });
    const audio = $("voice-audio");
    audio.src = `/studio/voice?${params}`;
    audio.play().catch(() => showError("The sample could not be played."));
  });
  window.addEventListener("hashchange", () => { const id = currentRun(); if (id) follow(id); });

  fillVoices();
  const id = currentRun();
  if (id) follow(id);
}());
