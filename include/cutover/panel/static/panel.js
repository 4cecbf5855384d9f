// Links to Airflow's own screens (runs, approvals). Inside the UI the panel is an iframe
// sandboxed without top navigation, but same-origin: move Airflow's router instead.
function openInAirflow(href) {
  if (window.top === window) { window.location.href = href; return; }
  window.top.history.pushState({}, "", href);
  window.top.dispatchEvent(new PopStateEvent("popstate"));
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-top]");
  if (!link) return;
  event.preventDefault();
  openInAirflow(link.getAttribute("href"));
});

// The panel's actions: each one asks the panel's API to trigger a DAG run in Airflow.
document.addEventListener("DOMContentLoaded", () => {
  const message = document.getElementById("message");
  document.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      const body = {};
      if (button.dataset.action === "rollback") {
        const reason = window.prompt("Why roll back? (recorded in the history)");
        if (!reason) return;
        body.reason = reason;
      }
      if (button.dataset.target) body.target_phase = button.dataset.target;
      button.disabled = true;
      message.textContent = "asking Airflow ...";
      try {
        const reply = await fetch(button.dataset.url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        const data = await reply.json();
        if (!reply.ok) throw new Error(data.detail || reply.statusText);
        message.innerHTML = "";
        const link = document.createElement("a");
        link.href = data.link; link.dataset.top = ""; link.textContent = data.run_id;
        message.append(`${data.dag_id}: run `, link, ` ${data.state}`);
        message.className = "pass";
        setTimeout(() => window.location.reload(), 4000);
      } catch (err) {
        message.textContent = `refused: ${err.message}`;
        message.className = "fail";
      } finally {
        button.disabled = false;
      }
    });
  });
});
