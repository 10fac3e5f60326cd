// sharerig pages: every change goes through the JSON API (same origin, so the
// server's CSRF check sees our Origin). No framework, no build step.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // Sizes as the server prints them (binary units).
  function bytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u += 1;
    }
    return `${v.toFixed(1)} ${units[u]}`;
  }

  // The server's `{"error": "..."}` message, or the status line.
  async function errorOf(res) {
    try {
      const body = await res.json();
      if (body && body.error) return body.error;
    } catch (_) {
      // not JSON
    }
    return `${res.status} ${res.statusText}`;
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (!res.ok) throw new Error(await errorOf(res));
    return res.status === 204 ? null : res.json();
  }

  function say(text, isError = false) {
    const status = $("#status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  // An RFC 3339 time `days` days from now, or "never".
  function expirationIn(days) {
    if (days === "never") return "never";
    return new Date(Date.now() + Number(days) * 86400e3).toISOString();
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // Clipboard API refused (permissions, insecure context): select and copy.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  }

  // Copy buttons: `data-copy` holds a URL, `data-copy-path` a path on this server.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy], [data-copy-path]");
    if (!button) return;
    const text = button.dataset.copy || location.origin + button.dataset.copyPath;
    copyText(text, button);
  });

  // Mark the current page in the navigation.
  for (const a of $$("header nav a")) {
    if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
  }

  const logout = $("#logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      await fetch("/api/auth", { method: "DELETE" });
      location.assign("/login");
    });
  }

  const loginForm = $("#login-form");
  if (loginForm) {
    loginForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $("#login-error");
      error.textContent = "";
      try {
        await api("POST", "/api/auth", { sharedSecret: $("#secret").value });
        location.assign("/");
      } catch (e) {
        error.textContent = e.message;
        $("#secret").select();
      }
    });
  }

  // ---- Uploads (owner page and guest page) ----
  const options = $("#upload-options");
  const list = $("#upload-list");
  if (options && list) {
    const owner = options.dataset.owner === "true";
    const maxBytes = Number(options.dataset.maxBytes || 0);
    const queue = [];
    let busy = false;

    function uploadUrl() {
      if (!owner) return options.dataset.endpoint;
      const params = new URLSearchParams();
      params.set("expiration", expirationIn($("#expiration").value));
      const max = $("#max-downloads").value.trim();
      if (max) params.set("maxDownloads", max);
      return `${options.dataset.endpoint}?${params}`;
    }

    // One list item per file: name, progress bar, then the link or the error.
    function itemFor(file) {
      const li = document.createElement("li");
      li.className = "upload-item";
      li.dataset.state = "queued";
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = `${file.name} (${bytes(file.size)})`;
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-label", `Upload of ${file.name}`);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = "waiting";
      const row = document.createElement("div");
      row.className = "progress-row";
      row.append(bar, pct);
      const result = document.createElement("div");
      result.className = "result";
      result.setAttribute("role", "status");
      li.append(name, row, result);
      list.append(li);
      return { li, bar, pct, result };
    }

    function showLink(item, file, url) {
      item.result.textContent = "";
      const label = document.createElement("label");
      label.className = "visually-hidden";
      const input = document.createElement("input");
      input.type = "text";
      input.readOnly = true;
      input.value = url;
      input.className = "link";
      input.id = `link-${Math.random().toString(36).slice(2)}`;
      label.htmlFor = input.id;
      label.textContent = `Link to ${file.name}`;
      input.addEventListener("focus", () => input.select());
      const copy = document.createElement("button");
      copy.type = "button";
      copy.dataset.copy = url;
      copy.textContent = "Copy link";
      copy.setAttribute("aria-label", `Copy the link to ${file.name}`);
      const open = document.createElement("a");
      open.href = url;
      open.textContent = "Open";
      open.className = "open-link";
      item.result.append(label, input, copy, open);
    }

    function showError(item, message) {
      item.li.dataset.state = "failed";
      item.pct.textContent = "failed";
      item.result.textContent = "";
      const p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      p.textContent = message;
      item.result.append(p);
    }

    function send(file, item) {
      return new Promise((resolve) => {
        const form = new FormData();
        form.append("file", file, file.name);
        if (owner) {
          const note = $("#note").value;
          if (note) form.append("note", note);
        }
        const xhr = new XMLHttpRequest();
        xhr.open("POST", uploadUrl());
        xhr.setRequestHeader("Accept", "application/json");
        xhr.responseType = "json";
        item.li.dataset.state = "uploading";
        item.pct.textContent = "0%";
        // The bar follows the browser's upload progress events (the last
        // one comes when the whole body is sent).
        let computable = false;
        xhr.upload.addEventListener("progress", (e) => {
          if (!e.lengthComputable) return;
          computable = true;
          const p = Math.floor((e.loaded / e.total) * 100);
          item.bar.value = p;
          item.pct.textContent = `${p}%`;
        });
        xhr.addEventListener("load", () => {
          const body = xhr.response || {};
          if (xhr.status === 200 && body.id) {
            item.li.dataset.state = "done";
            item.li.dataset.id = body.id;
            if (!computable) {
              // No progress events with a length: show it finished anyway.
              item.bar.value = 100;
              item.pct.textContent = "100%";
            }
            showLink(item, file, body.url || `${location.origin}/-${body.id}`);
            const left = $("#uploads-left");
            if (left && /^\d+$/.test(left.textContent)) {
              left.textContent = String(Math.max(0, Number(left.textContent) - 1));
            }
          } else {
            showError(item, body.error || `upload failed: ${xhr.status} ${xhr.statusText}`);
          }
          resolve();
        });
        xhr.addEventListener("error", () => {
          showError(item, "the connection failed before the upload finished");
          resolve();
        });
        xhr.send(form);
      });
    }

    // Files go one at a time: each gets the whole connection.
    async function drain() {
      if (busy) return;
      busy = true;
      while (queue.length) {
        const { file, item } = queue.shift();
        await send(file, item);
      }
      busy = false;
    }

    function enqueue(files) {
      for (const file of files) {
        const item = itemFor(file);
        if (maxBytes && file.size > maxBytes) {
          showError(item, `${file.name} is ${bytes(file.size)}; this link takes files up to ${bytes(maxBytes)}`);
          continue;
        }
        queue.push({ file, item });
      }
      drain();
    }

    const input = $("#file-input");
    input.addEventListener("change", () => {
      enqueue(Array.from(input.files));
      input.value = "";
    });

    const zone = $("#dropzone");
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (e) => {
        e.preventDefault();
        zone.classList.add("over");
      });
    }
    for (const type of ["dragleave", "drop"]) {
      zone.addEventListener(type, () => zone.classList.remove("over"));
    }
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      enqueue(Array.from(e.dataTransfer.files));
    });

    // Pasted files upload; pasted text becomes a .txt file (unless it is
    // pasted into a form field).
    document.addEventListener("paste", (e) => {
      if (e.target.closest("input, textarea, select")) return;
      const files = Array.from(e.clipboardData.files);
      if (files.length) {
        e.preventDefault();
        enqueue(files);
        return;
      }
      const text = e.clipboardData.getData("text/plain");
      if (text) {
        e.preventDefault();
        const stamp = new Date().toISOString().replace(/[:.]/g, "-");
        enqueue([new File([text], `pasted-${stamp}.txt`, { type: "text/plain" })]);
      }
    });
  }

  // ---- Files list and file page: delete ----
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-delete-entry]");
    if (!button) return;
    if (!confirm(`Delete ${button.dataset.name}? Its link stops working.`)) return;
    try {
      await api("DELETE", `/api/entry/${button.dataset.deleteEntry}`);
      if (button.dataset.then) {
        location.assign(button.dataset.then);
        return;
      }
      const row = button.closest("tr");
      if (row) row.remove();
      say(`Deleted ${button.dataset.name}.`);
    } catch (e) {
      say(e.message, true);
    }
  });

  // ---- File page: edit ----
  const editForm = $("#edit-form");
  if (editForm) {
    const at = $("#expires-at");
    const never = $("#never-expires");
    // The server's UTC time, shown in the browser's time zone.
    if (at.dataset.utc) {
      const d = new Date(at.dataset.utc);
      const local = new Date(d.getTime() - d.getTimezoneOffset() * 60e3);
      at.value = local.toISOString().slice(0, 16);
    }
    const sync = () => {
      at.disabled = never.checked;
    };
    never.addEventListener("change", sync);
    sync();
    editForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const max = $("#max-downloads").value.trim();
      const body = {
        filename: $("#filename").value,
        note: $("#note").value,
        maxDownloads: max ? Number(max) : null,
      };
      if (never.checked) {
        body.expiration = "never";
      } else if (at.value) {
        body.expiration = new Date(at.value).toISOString();
      }
      try {
        await api("PUT", `/api/entry/${editForm.dataset.id}`, body);
        say("Saved.");
        setTimeout(() => location.reload(), 600);
      } catch (e) {
        say(e.message, true);
      }
    });
  }

  // ---- Guest links ----
  const linkForm = $("#guest-link-form");
  if (linkForm) {
    linkForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const mib = $("#max-file-mib").value.trim();
      const uploads = $("#max-uploads").value.trim();
      const lifetime = $("#file-lifetime").value;
      const body = {
        label: $("#label").value,
        urlExpirationTime: expirationIn($("#link-expires").value),
        fileLifetime: lifetime === "never" ? "never" : `${lifetime}days`,
        maxFileBytes: mib ? Math.round(Number(mib) * 1048576) : null,
        maxFileUploads: uploads ? Number(uploads) : null,
      };
      try {
        await api("POST", "/api/guest-links", body);
        location.assign("/guest-links");
      } catch (e) {
        say(e.message, true);
      }
    });
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-link-action]");
    if (!button) return;
    const { linkAction, id } = button.dataset;
    try {
      if (linkAction === "delete") {
        const name = button.dataset.name || "this guest link";
        if (!confirm(`Delete ${name}? Files uploaded through it stay.`)) return;
        await api("DELETE", `/api/guest-links/${id}`);
      } else {
        await api("PUT", `/api/guest-links/${id}/${linkAction}`);
      }
      location.reload();
    } catch (e) {
      say(e.message, true);
    }
  });

  // ---- Settings ----
  const settingsForm = $("#settings-form");
  if (settingsForm) {
    const days = $("#default-days");
    const never = $("#default-never");
    never.addEventListener("change", () => {
      days.disabled = never.checked;
    });
    settingsForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = never.checked
        ? { defaultNeverExpire: true }
        : { defaultExpirationDays: Number(days.value) };
      try {
        await api("PUT", "/api/settings", body);
        say("Saved.");
      } catch (e) {
        say(e.message, true);
      }
    });
  }

  const logoutEverywhere = $("#logout-everywhere");
  if (logoutEverywhere) {
    logoutEverywhere.addEventListener("click", async () => {
      if (!confirm("End every login, in every browser, this one included?")) return;
      try {
        await api("DELETE", "/api/sessions");
        location.assign("/login");
      } catch (e) {
        const status = $("#sessions-status");
        status.textContent = e.message;
        status.classList.add("error");
      }
    });
  }
})();
