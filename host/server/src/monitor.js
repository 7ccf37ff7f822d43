// The job monitor's few lines of script: the job page follows its log live (Server-Sent
// Events), counts down a gate's timeout, and reloads itself when the job's status changes.
// The pages work without it; it only saves pressing reload.
"use strict";
(function () {
  const log = document.getElementById("log");
  if (log && window.EventSource) {
    const source = new EventSource(log.dataset.stream);
    source.addEventListener("log", (e) => {
      const line = JSON.parse(e.data);
      log.textContent += "[" + line.step + "] " + line.level + " " + line.message + "\n";
      log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", () => source.close());
    source.addEventListener("error", () => {});
  }
  for (const c of document.querySelectorAll(".countdown")) {
    const deadline = Number(c.dataset.deadline);
    const tick = () => {
      const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      c.textContent = "in " + (s >= 3600 ? Math.floor(s / 3600) + " h " : "") + Math.floor((s % 3600) / 60) + " min " + (s % 60) + " s";
    };
    tick();
    setInterval(tick, 1000);
  }
  const status = document.getElementById("job-status");
  if (status) {
    const url = "/api/v1/jobs/" + encodeURIComponent(status.dataset.job);
    const check = async () => {
      try {
        const r = await fetch(url, { credentials: "same-origin" });
        if (!r.ok) return;
        const job = await r.json();
        if (job.status !== status.dataset.status) {
          location.reload();
        }
      } catch (_) {}
    };
    setInterval(check, 1000);
  }
})();
