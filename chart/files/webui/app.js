// The etcd Web UI: plain JavaScript, no libraries. Every value from etcd reaches the page as
// text (textContent), never as HTML.
"use strict";

const REFRESH_MS = 3000;
const PAGE_SIZE = 200;
const state = {
  session: null,
  tab: "cluster",
  prefix: "",
  next: "",
  timer: null,
  current: null,
  valueView: "auto",
};

const $ = (id) => document.getElementById(id);

function make(tag, props, ...children) {
  const element = document.createElement(tag);
  Object.assign(element, props || {});
  for (const child of children) {
    element.append(child);
  }
  return element;
}

function toBase64(bytes) {
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

const textToBase64 = (text) => toBase64(new TextEncoder().encode(text));
const base64ToText = (text) => new TextDecoder().decode(fromBase64(text));

function hexDump(bytes) {
  const lines = [];
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const row = Array.from(bytes.slice(offset, offset + 16));
    const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(offset.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + ascii);
  }
  return lines.join("\n");
}

function formatBytes(count) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.session && method !== "GET") {
    headers["X-CSRF-Token"] = state.session.csrf;
  }
  const options = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/api/login" && path !== "/api/session") {
    showLogin("Your session has ended: log in again.");
  }
  if (!response.ok) {
    throw new ApiError(response.status, data.error || response.statusText);
  }
  return data;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

// -- login -------------------------------------------------------------------------------------
function showLogin(reason) {
  state.session = null;
  stopRefresh();
  $("tabs").hidden = true;
  $("who").hidden = true;
  $("cluster-view").hidden = true;
  $("keys-view").hidden = true;
  $("login-form").hidden = false;
  showMessage(reason || "");
}

function startSession(session) {
  state.session = session;
  $("login-form").hidden = true;
  $("login-error").hidden = true;
  $("tabs").hidden = false;
  $("who").hidden = false;
  $("user-name").textContent = session.user;
  $("logout").hidden = !session.authEnabled;
  $("mode").textContent = session.readOnly ? "read-only" : "read-write";
  $("mode").className = "badge " + (session.readOnly ? "read-only" : "read-write");
  showMessage("");
  showTab(state.tab);
}

async function login(event) {
  event.preventDefault();
  $("login-submit").disabled = true;
  try {
    const session = await api("POST", "/api/login", {
      username: $("login-user").value,
      password: $("login-password").value,
    });
    $("login-password").value = "";
    startSession(session);
  } catch (error) {
    $("login-error").textContent = error.message;
    $("login-error").hidden = false;
  } finally {
    $("login-submit").disabled = false;
  }
}

async function logout() {
  try {
    await api("POST", "/api/logout");
  } finally {
    showLogin("Logged out.");
  }
}

// -- tabs --------------------------------------------------------------------------------------
function showTab(tab) {
  state.tab = tab;
  $("tab-cluster").classList.toggle("active", tab === "cluster");
  $("tab-keys").classList.toggle("active", tab === "keys");
  $("cluster-view").hidden = tab !== "cluster";
  $("keys-view").hidden = tab !== "keys";
  stopRefresh();
  if (tab === "cluster") {
    refreshCluster();
    state.timer = setInterval(refreshCluster, REFRESH_MS);
  } else {
    renderNewKey();
    listKeys(state.prefix, true);
  }
}

function stopRefresh() {
  if (state.timer) {
    clearInterval(state.timer);
    state.timer = null;
  }
}

// -- cluster -----------------------------------------------------------------------------------
async function refreshCluster() {
  let cluster;
  try {
    cluster = await api("GET", "/api/cluster");
  } catch (error) {
    $("cluster-error").textContent = error.message;
    $("cluster-error").hidden = false;
    return;
  }
  $("cluster-error").hidden = !cluster.alarmError;
  $("cluster-error").textContent = cluster.alarmError ? "alarms: " + cluster.alarmError : "";
  $("cluster-id").textContent = cluster.clusterId;
  $("cluster-revision").textContent = String(cluster.revision);
  const leader = cluster.members.find((m) => m.leader);
  $("cluster-leader").textContent = leader ? leader.name : "none";
  $("cluster-updated").textContent = new Date().toLocaleTimeString();
  const rows = cluster.members.map(memberRow);
  $("cluster-table").tBodies[0].replaceChildren(...rows);
}

function memberRow(member) {
  const cell = (text, className) => make("td", { textContent: text, className: className || "" });
  const role = member.learner ? "learner" : member.leader ? "leader" : "follower";
  const health = member.health || {};
  const size =
    member.dbSize !== undefined
      ? formatBytes(member.dbSize) + " / " + formatBytes(member.dbSizeInUse)
      : "-";
  const row = make(
    "tr",
    { className: "member " + role },
    cell(member.name || "(not started)", "name"),
    cell(member.id, "mono"),
    cell(role, "role"),
    cell(health.healthy ? "healthy" : "unhealthy: " + (health.reason || "?"),
      health.healthy ? "ok" : "bad"),
    cell(member.version || "-"),
    cell(size),
    cell(member.raftTerm !== undefined ? String(member.raftTerm) : "-"),
    cell(member.raftIndex !== undefined ? String(member.raftIndex) : "-"),
    cell((member.alarms || []).join(", ") || "none", (member.alarms || []).length ? "bad" : ""),
    cell(member.peerURLs.join("\n"), "mono urls"),
    cell(member.clientURLs.join("\n"), "mono urls"),
  );
  row.dataset.member = member.name;
  if (member.statusError) {
    row.title = member.statusError;
  }
  return row;
}

// -- keys --------------------------------------------------------------------------------------
function renderBreadcrumb(prefix) {
  const parts = [make("button", { type: "button", textContent: "(all keys)", className: "crumb" })];
  parts[0].addEventListener("click", () => listKeys("", true));
  let at = 0;
  while (at < prefix.length) {
    const slash = prefix.indexOf("/", at);
    const end = slash < 0 ? prefix.length : slash + 1;
    const target = prefix.slice(0, end);
    const crumb = make("button", { type: "button", textContent: prefix.slice(at, end), className: "crumb" });
    crumb.addEventListener("click", () => listKeys(target, true));
    parts.push(crumb);
    at = end;
  }
  $("breadcrumb").replaceChildren(...parts);
}

async function listKeys(prefix, fresh) {
  if (fresh) {
    state.prefix = prefix;
    state.next = "";
    $("keys-list").replaceChildren();
    renderBreadcrumb(prefix);
  }
  const query = new URLSearchParams({ prefix: textToBase64(prefix), limit: String(PAGE_SIZE) });
  if (state.next) {
    query.set("after", state.next);
  }
  let page;
  try {
    page = await api("GET", "/api/keys?" + query.toString());
  } catch (error) {
    showMessage(error.message);
    return;
  }
  if (page.count !== null && page.count !== undefined) {
    const noun = page.count === 1 ? " key" : " keys";
    $("keys-count").textContent = page.count + noun + " under " + (prefix || "(all keys)");
  }
  for (const entry of page.entries) {
    const label = entry.display.slice(prefix.length) || entry.display;
    const item = make("li", { className: entry.folder ? "folder" : "key" });
    const link = make("button", { type: "button", textContent: label });
    link.dataset.key = entry.display;
    link.addEventListener("click", () =>
      entry.folder ? listKeys(entry.display, true) : showKey(entry.key),
    );
    item.append(link);
    $("keys-list").append(item);
  }
  state.next = page.next;
  $("keys-more").hidden = !page.next;
}

async function showKey(keyBase64) {
  let kv;
  try {
    kv = await api("GET", "/api/key?key=" + encodeURIComponent(keyBase64));
  } catch (error) {
    showMessage(error.message);
    return;
  }
  showMessage("");
  state.current = kv;
  state.valueView = "auto";
  $("key-detail").hidden = false;
  $("key-name").textContent = kv.display;
  const kube = kv.kubernetes;
  $("key-kubernetes").hidden = !kube;
  if (kube) {
    const type = kv.value.objectType || {};
    const kind = type.kind ? type.kind + " (" + (type.apiVersion || "?") + ")" : "";
    const place = kube.namespace ? kube.namespace + "/" + kube.name : kube.name;
    const resource = (kube.group ? kube.group + "/" : "") + kube.resource;
    $("key-kubernetes").textContent =
      "Kubernetes " + resource + (kind ? ", " + kind : "") + ": " + (place || "(no name)");
  }
  const meta = [
    ["create revision", kv.createRevision],
    ["mod revision", kv.modRevision],
    ["version", kv.version],
    ["lease", kv.lease || "none"],
    ["size", formatBytes(kv.value.size)],
    ["format", kv.value.format],
  ];
  $("key-meta").replaceChildren(
    ...meta.flatMap(([name, value]) => [make("dt", { textContent: name }), make("dd", { textContent: String(value) })]),
  );
  $("history-list").replaceChildren();
  $("history-end").textContent = "";
  renderValueViews();
  renderValue();
  renderEdit();
}

function valueText(value, view) {
  const bytes = () => fromBase64(value.base64);
  if (view === "json" && value.json !== undefined) {
    return JSON.stringify(value.json, null, 2);
  }
  if (view === "text" && value.text !== undefined) {
    return value.text;
  }
  if (view === "base64") {
    return value.base64;
  }
  if (view === "hex") {
    return hexDump(bytes());
  }
  if (value.format === "kubernetes-protobuf") {
    return "Kubernetes protobuf (k8s\\0 prefix), shown as hex:\n\n" + hexDump(bytes());
  }
  if (value.json !== undefined) {
    return JSON.stringify(value.json, null, 2);
  }
  return value.text !== undefined ? value.text : hexDump(bytes());
}

function renderValueViews() {
  const value = state.current.value;
  const views = ["auto"];
  if (value.text !== undefined) views.push("text");
  if (value.json !== undefined) views.push("json");
  views.push("hex", "base64");
  $("value-views").replaceChildren(
    ...views.map((view) => {
      const button = make("button", { type: "button", textContent: view, className: "view" });
      button.classList.toggle("active", view === state.valueView);
      button.addEventListener("click", () => {
        state.valueView = view;
        renderValueViews();
        renderValue();
      });
      return button;
    }),
  );
}

function renderValue() {
  $("key-value").textContent = valueText(state.current.value, state.valueView);
}

// Edit controls exist only in a writable UI: a read-only one has no buttons to press.
function renderEdit() {
  if (!state.session || state.session.readOnly) {
    $("key-edit").replaceChildren();
    return;
  }
  const value = state.current.value;
  const editor = make("textarea", { id: "edit-value", rows: 8, value: value.text !== undefined ? value.text : "" });
  const save = make("button", { type: "button", id: "edit-save", textContent: "Save" });
  const remove = make("button", { type: "button", id: "edit-delete", textContent: "Delete", className: "danger" });
  if (value.text === undefined) {
    editor.disabled = true;
    editor.value = "(binary value: not editable here)";
    save.disabled = true;
  }
  save.addEventListener("click", async () => {
    await writeKey(state.current.key, editor.value);
  });
  remove.addEventListener("click", async () => {
    if (!confirm("Delete " + state.current.display + "?")) return;
    try {
      await api("DELETE", "/api/key?key=" + encodeURIComponent(state.current.key));
      $("key-detail").hidden = true;
      listKeys(state.prefix, true);
    } catch (error) {
      showMessage(error.message);
    }
  });
  $("key-edit").replaceChildren(editor, make("div", { className: "actions" }, save, remove));
}

async function writeKey(keyBase64, text) {
  try {
    await api("PUT", "/api/key", { key: keyBase64, value: textToBase64(text) });
    showMessage("");
    await showKey(keyBase64);
    $("key-detail").classList.add("saved");
    setTimeout(() => $("key-detail").classList.remove("saved"), 800);
  } catch (error) {
    showMessage(error.message);
  }
}

function renderNewKey() {
  if (!state.session || state.session.readOnly) {
    $("new-key").replaceChildren();
    return;
  }
  const name = make("input", { id: "new-key-name", placeholder: "new key" });
  const value = make("input", { id: "new-key-value", placeholder: "value" });
  const create = make("button", { type: "button", id: "new-key-create", textContent: "Put" });
  create.addEventListener("click", async () => {
    const key = state.prefix + name.value;
    if (!name.value) return;
    await writeKey(textToBase64(key), value.value);
    listKeys(state.prefix, true);
  });
  $("new-key").replaceChildren(make("h3", { textContent: "New key under this prefix" }), name, value, create);
}

async function showHistory() {
  const kv = state.current;
  let history;
  try {
    history = await api("GET", "/api/history?key=" + encodeURIComponent(kv.key));
  } catch (error) {
    showMessage(error.message);
    return;
  }
  const items = history.versions.map((version) => {
    const label = "rev " + version.modRevision + " (version " + version.version + "): ";
    const preview = (version.value.text !== undefined ? version.value.text : version.value.format).slice(0, 120);
    const item = make("li", {}, make("span", { className: "mono", textContent: label }), preview);
    item.addEventListener("click", () => {
      $("key-value").textContent = valueText(version.value, "auto");
    });
    return item;
  });
  $("history-list").replaceChildren(...items);
  const reasons = {
    created: "That is every earlier version.",
    compacted: "Older versions were compacted away.",
    limit: "Older versions exist; only the latest are shown.",
    deleted: "The key no longer exists.",
  };
  $("history-end").textContent =
    (items.length ? "" : "No earlier versions. ") + (reasons[history.stop] || "");
}

// -- start -------------------------------------------------------------------------------------
async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("tab-cluster").addEventListener("click", () => showTab("cluster"));
  $("tab-keys").addEventListener("click", () => showTab("keys"));
  $("keys-more").addEventListener("click", () => listKeys(state.prefix, false));
  $("history-button").addEventListener("click", showHistory);
  try {
    startSession(await api("GET", "/api/session"));
  } catch (error) {
    showLogin(error.status === 401 ? "" : error.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
