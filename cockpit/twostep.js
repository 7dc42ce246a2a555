/* twostep's Cockpit page, the admin part (docs/web-admin.md); the part for every user, their own
 * account, is self.js (docs/self-service.md). Plain JavaScript, no build step.
 *
 * The page holds no logic of its own: every read and every change is one run of the twostep
 * command through cockpit.spawn(["twostep", ..., "--json"], { superuser: "require" }), whose
 * JSON forms are documented in docs/cli.md. Secrets never go on a command line: the code typed
 * to confirm an enrollment or an address goes to the command's standard input. Every string
 * from the system is put into the page with textContent, never as HTML.
 */
"use strict";

(function () {
    const $ = (id) => document.getElementById(id);

    /* ---- dark mode, as Cockpit's own pages do (shell:style: auto, light or dark) ---- */
    function applyStyle(style) {
        const wanted = style || localStorage.getItem("shell:style") || "auto";
        const dark = wanted === "dark" ||
            (wanted === "auto" && window.matchMedia &&
             window.matchMedia("(prefers-color-scheme: dark)").matches);
        document.documentElement.classList.toggle("pf-theme-dark", dark);
    }
    applyStyle();
    window.addEventListener("storage", (ev) => { if (ev.key === "shell:style") applyStyle(); });
    try {
        window.top.addEventListener("cockpit-style", (ev) => applyStyle(ev.detail && ev.detail.style));
    } catch (e) { /* another origin: the storage event still arrives */ }
    if (window.matchMedia)
        window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyStyle());

    /* ---- running the CLI ---- */

    /* Runs `twostep ARGS...`; resolves with its standard output, rejects with an Error whose
     * message is the command's own error text (or Cockpit's, e.g. when it is not installed). */
    function twostep(args, input) {
        return new Promise((resolve, reject) => {
            let proc;
            try {
                proc = cockpit.spawn(["twostep"].concat(args), { superuser: "require", err: "message" });
            } catch (e) {
                reject(e);
                return;
            }
            proc.then((out) => resolve(out), (ex) => reject(cliError(ex)));
            if (input !== undefined)
                proc.input(input);
        });
    }

    function cliError(ex) {
        if (ex && ex.problem === "not-found")
            return new Error("The twostep command was not found on this machine: install the twostep package.");
        if (ex && ex.problem === "access-denied")
            return new Error("Administrative access is needed.");
        const text = (ex && (ex.message || ex.problem)) || String(ex);
        return new Error(text.trim());
    }

    async function twostepJson(args, input) {
        const out = await twostep(args, input);
        try {
            return JSON.parse(out);
        } catch (e) {
            throw new Error("twostep " + args.join(" ") + " printed something that is not JSON:\n" + out);
        }
    }

    /* A long-running command that talks in JSON lines (set-email --json, enroll --method email
     * --json): `onEvent(object, proc)` for every line; resolves when it ends. */
    function twostepEvents(args, onEvent) {
        return new Promise((resolve, reject) => {
            let buffer = "";
            const proc = cockpit.spawn(["twostep"].concat(args), { superuser: "require", err: "message" });
            proc.stream((data) => {
                buffer += data;
                let nl;
                while ((nl = buffer.indexOf("\n")) >= 0) {
                    const line = buffer.slice(0, nl).trim();
                    buffer = buffer.slice(nl + 1);
                    if (!line)
                        continue;
                    try {
                        onEvent(JSON.parse(line), proc);
                    } catch (e) {
                        console.warn("twostep: not a JSON line:", line);
                    }
                }
            });
            proc.then(() => resolve(), (ex) => reject(cliError(ex)));
            twostepEvents.current = proc;
        });
    }

    /* ---- page state ---- */
    let users = [];
    let config = null; // `config get --json`
    let admin = null;

    function showError(title, err) {
        $("ts-error-title").textContent = title;
        $("ts-error-text").textContent = err ? (err.message || String(err)) : "";
        $("ts-error").hidden = !err;
    }

    function notice(text) {
        $("ts-notice-text").textContent = text || "";
        $("ts-notice").hidden = !text;
    }

    function el(tag, props, children) {
        const node = document.createElement(tag);
        Object.entries(props || {}).forEach(([k, v]) => {
            if (k === "text") node.textContent = v;
            else if (k === "class") node.className = v;
            else if (k.startsWith("data-")) node.setAttribute(k, v);
            else node[k] = v;
        });
        (children || []).forEach((c) => node.appendChild(c));
        return node;
    }

    /* ---- users ---- */
    const STATE_LABEL = {
        enabled: ["Enabled", "pf-m-green"],
        disabled: ["Disabled", ""],
        incomplete: ["Incomplete", "pf-m-orange"],
        locked: ["Locked", "pf-m-red"],
    };

    function timeText(t) {
        return new Date(t * 1000).toLocaleString();
    }

    async function loadUsers() {
        try {
            users = await twostepJson(["status", "--all", "--json"]);
            showError("", null);
        } catch (e) {
            users = [];
            showError("Could not read the users (twostep status --all --json)", e);
        }
        renderUsers();
    }

    function renderUsers() {
        const body = $("ts-users-body");
        body.textContent = "";
        const q = $("ts-search").value.trim().toLowerCase();
        const state = $("ts-filter").value;
        const shown = users.filter((u) => (!q || u.user.toLowerCase().includes(q)) && (!state || u.state === state));
        shown.forEach((u) => body.appendChild(userRow(u)));
        $("ts-users-empty").hidden = shown.length > 0;
    }

    function userRow(u) {
        const [label, colour] = STATE_LABEL[u.state] || [u.state, ""];
        let stateText = label;
        if (u.state === "locked" && u.locked_until)
            stateText += " until " + timeText(u.locked_until);
        else if (u.locked_hosts && u.locked_hosts.length)
            stateText += " (locked from " + u.locked_hosts.length + (u.locked_hosts.length === 1 ? " host)" : " hosts)");
        const login = u.last_login
            ? timeText(u.last_login.time) + " from " + (u.last_login.rhost || "local") + " (" + u.last_login.service + ", " + u.last_login.method + ")"
            : "-";
        const row = el("tr", { "data-user": u.user, "data-state": u.state }, [
            el("td", { "data-label": "User", class: "ts-user", text: u.user }),
            el("td", { "data-label": "State" }, [el("span", { class: "pf-c-label ts-state " + colour, text: stateText })]),
            el("td", { "data-label": "Methods", class: "ts-methods", text: u.methods.length ? u.methods.join(", ") : "-" }),
            el("td", { "data-label": "Recovery address", text: u.email || "-" }),
            el("td", { "data-label": "Emergency codes", class: "ts-codes-left", text: u.emergency_codes_left === null ? "-" : String(u.emergency_codes_left) }),
            el("td", { "data-label": "Last login", text: login }),
            el("td", { "data-label": "Recent failures", text: String(u.recent_failures) }),
            el("td", { "data-label": "SMB gates", class: "ts-gates", text: u.open_gates ? String(u.open_gates) : "-" }),
            el("td", { class: "pf-c-table__action" }, [actionsMenu(u)]),
        ]);
        return row;
    }

    function actionsFor(u) {
        const enrolled = u.state === "enabled" || u.state === "locked";
        const list = [];
        if (!enrolled) list.push(["enroll", "Enroll…"]);
        if (!enrolled && u.archived) list.push(["restore", "Restore the last enrollment…"]);
        if (enrolled) {
            if (u.state === "locked" || u.recent_failures > 0 || (u.locked_hosts && u.locked_hosts.length))
                list.push(["unlock", "Unlock"]);
            if (u.methods.includes("totp")) list.push(["show-qr", "Show QR code (second device)…"]);
            list.push(["codes", "New emergency codes…"]);
            list.push(["set-email", u.email ? "Change recovery address…" : "Set recovery address…"]);
            if (u.email) list.push(["email-test", "Send a test mail…"]);
            if (u.open_gates) list.push(["close-gates", "Close SMB access…"]);
            list.push(["reset", "Reset (lost phone)…"]);
        }
        return list;
    }

    function actionsMenu(u) {
        const menu = el("ul", { class: "pf-c-dropdown__menu pf-m-align-right", hidden: true });
        actionsFor(u).forEach(([action, text]) => {
            const item = el("button", { class: "pf-c-dropdown__menu-item", type: "button", text, "data-action": action });
            item.addEventListener("click", () => { menu.hidden = true; ACTIONS[action](u); });
            menu.appendChild(el("li", {}, [item]));
        });
        const toggle = el("button", { class: "pf-c-dropdown__toggle pf-m-plain ts-actions-toggle", type: "button", text: "⋮", "aria-label": "Actions for " + u.user });
        toggle.setAttribute("aria-label", "Actions for " + u.user);
        toggle.addEventListener("click", (ev) => {
            ev.stopPropagation();
            document.querySelectorAll(".pf-c-dropdown__menu").forEach((m) => { if (m !== menu) m.hidden = true; });
            menu.hidden = !menu.hidden;
        });
        return el("div", { class: "pf-c-dropdown" }, [toggle, menu]);
    }
    document.addEventListener("click", () => document.querySelectorAll(".pf-c-dropdown__menu").forEach((m) => { m.hidden = true; }));

    /* ---- the dialog ---- */
    function modal(title, bodyNodes, buttons) {
        $("ts-modal-title").textContent = title;
        const body = $("ts-modal-body");
        body.textContent = "";
        bodyNodes.forEach((n) => body.appendChild(n));
        modalError(null);
        const footer = $("ts-modal-footer");
        footer.textContent = "";
        buttons.forEach((b) => {
            const button = el("button", { class: "pf-c-button " + (b.primary ? "pf-m-primary" : b.danger ? "pf-m-danger" : "pf-m-link"), type: "button", id: b.id, text: b.text });
            button.addEventListener("click", async () => {
                footer.querySelectorAll("button").forEach((x) => { x.disabled = true; });
                try {
                    await b.run();
                } catch (e) {
                    modalError(e);
                } finally {
                    footer.querySelectorAll("button").forEach((x) => { x.disabled = false; });
                }
            });
            footer.appendChild(button);
        });
        $("ts-modal-backdrop").hidden = false;
        const first = body.querySelector("input");
        if (first) first.focus();
    }

    function modalError(err) {
        $("ts-modal-error-text").textContent = err ? (err.message || String(err)) : "";
        $("ts-modal-error").hidden = !err;
    }

    function closeModal() {
        $("ts-modal-backdrop").hidden = true;
        $("ts-modal-body").textContent = "";
        $("ts-print").textContent = "";
        if (twostepEvents.current) {
            twostepEvents.current.close("terminated");
            twostepEvents.current = null;
        }
        loadUsers();
    }

    function para(text, cls) {
        return el("p", { class: cls || "", text });
    }

    function codeInput(id, label) {
        return el("div", { class: "pf-c-form__group" }, [
            el("label", { class: "pf-c-form__label", htmlFor: id }, [el("span", { class: "pf-c-form__label-text", text: label })]),
            el("input", { class: "pf-c-form-control ts-code-input", id, type: "text", inputMode: "numeric", autocomplete: "one-time-code" }),
        ]);
    }

    function qrNodes(info) {
        // The SVG comes from the CLI; as an <img> it can never run script in the page.
        const img = el("img", { id: "ts-qr", class: "ts-qr", alt: "QR code for " + info.account, src: "data:image/svg+xml;base64," + btoa(info.qr_svg) });
        return [
            para("Scan this QR code with an authenticator app (Google or Microsoft Authenticator, Aegis, …):"),
            img,
            el("p", {}, [document.createTextNode("Or type the key: "), el("code", { id: "ts-secret", class: "ts-secret", text: info.secret })]),
            para("Account " + info.account + ", issuer " + info.issuer + ", time-based, " + info.algorithm + ", " + info.digits + " digits, every " + info.period + " seconds.", "ts-hint"),
        ];
    }

    /* The emergency codes, shown once, with Print and Download. */
    function showCodes(user, codes, heading) {
        const list = el("ul", { id: "ts-codes", class: "ts-codes" }, codes.map((c) => el("li", { text: c })));
        const text = "Emergency codes for " + user + " (" + window.location.hostname + "), each works once:\n" + codes.join("\n") + "\n";
        $("ts-print").textContent = "";
        $("ts-print").appendChild(el("pre", { text }));
        modal(heading, [
            para("Each emergency code works once, instead of a code from the app. Keep them offline (printed, or in a password manager): they are shown only now."),
            list,
        ], [
            { text: "Print", id: "ts-print-button", run: () => window.print() },
            {
                text: "Download",
                id: "ts-download",
                run: () => {
                    const a = el("a", { href: "data:text/plain;charset=utf-8," + encodeURIComponent(text), download: "emergency-codes-" + user + ".txt" });
                    document.body.appendChild(a);
                    a.click();
                    a.remove();
                },
            },
            { text: "Done", id: "ts-done", primary: true, run: closeModal },
        ]);
    }

    /* ---- actions (each one CLI command) ---- */
    const ACTIONS = {
        enroll(u) {
            const method = el("select", { class: "pf-c-form-control", id: "ts-method" }, [
                el("option", { value: "totp", text: "Authenticator app" }),
                el("option", { value: "email", text: "Codes by email (no phone)" }),
            ]);
            const address = el("input", { class: "pf-c-form-control", id: "ts-address", type: "email", placeholder: "name@example.com" });
            modal("Enroll " + u.user, [
                el("div", { class: "pf-c-form__group" }, [el("label", { class: "pf-c-form__label", htmlFor: "ts-method", text: "Method" }), method]),
                el("div", { class: "pf-c-form__group" }, [el("label", { class: "pf-c-form__label", htmlFor: "ts-address", text: "Address for codes by email (confirmed with a mailed code)" }), address]),
                para("With the app, a recovery address is set afterwards (Set recovery address…), also confirmed by mail.", "ts-hint"),
            ], [
                {
                    text: "Next",
                    id: "ts-next",
                    primary: true,
                    run: () => (method.value === "email" ? enrollEmail(u, address.value.trim()) : enrollApp(u)),
                },
                { text: "Cancel", id: "ts-cancel", run: closeModal },
            ]);
        },
        async "show-qr"(u) {
            const info = await twostepJson(["show-qr", u.user, "--json"]).catch((e) => { showError("Could not show the QR code", e); });
            if (!info) return;
            modal("QR code of " + u.user, [para("This shows " + u.user + "'s key: anyone who sees it can make their codes.", "ts-warning")].concat(qrNodes(info)),
                [{ text: "Close", id: "ts-done", primary: true, run: closeModal }]);
        },
        codes(u) {
            confirmAction("New emergency codes for " + u.user, "All of " + u.user + "'s current emergency codes stop working.", "Make new codes", async () => {
                const out = await twostepJson(["codes", u.user, "--json"]);
                showCodes(u.user, out.emergency_codes, "New emergency codes for " + u.user);
            });
        },
        reset(u) {
            confirmAction("Reset " + u.user, "Removes " + u.user + "'s enrollment (lost phone). It is archived: Restore brings it back.", "Reset", async () => {
                await twostepJson(["reset", u.user, "--json"]);
                notice("Reset " + u.user + ": the enrollment is archived.");
                closeModal();
            }, true);
        },
        "close-gates"(u) {
            const n = u.open_gates;
            confirmAction("Close SMB access of " + u.user,
                u.user + " has SMB access from " + n + (n === 1 ? " address" : " addresses") +
                " after a recent two-step login. Closing it means a new two-step login (web page, SSH) before the next SMB connection from there; connections already open stay open.",
                "Close SMB access", async () => {
                    const out = await twostepJson(["gate", "close", u.user, "--json"]);
                    notice("Closed " + out.closed + " SMB gate(s) of " + u.user + ".");
                    closeModal();
                }, true);
        },
        restore(u) {
            confirmAction("Restore " + u.user, "Brings back " + u.user + "'s last enrollment: the old app and the remaining emergency codes work again.", "Restore", async () => {
                await twostepJson(["restore", u.user, "--json"]);
                notice("Restored the enrollment of " + u.user + ".");
                closeModal();
            });
        },
        async unlock(u) {
            try {
                await twostepJson(["unlock", u.user, "--json"]);
                notice("Cleared failed attempts and any lockout of " + u.user + ".");
            } catch (e) {
                showError("Could not unlock " + u.user, e);
            }
            loadUsers();
        },
        "set-email"(u) {
            const address = el("input", { class: "pf-c-form-control", id: "ts-address", type: "email" });
            modal("Recovery address of " + u.user, [
                para("A code is mailed to the address; it is saved once that code is typed here."),
                address,
            ], [
                { text: "Send code", id: "ts-next", primary: true, run: () => confirmByMail(u, ["set-email", u.user, address.value.trim(), "--json"], "Saved the recovery address of " + u.user + ".") },
                { text: "Cancel", id: "ts-cancel", run: closeModal },
            ]);
        },
        "email-test"(u) {
            const address = el("input", { class: "pf-c-form-control", id: "ts-address", type: "email" });
            modal("Send a test mail", [para("Sends a test mail through the configured SMTP server to:"), address], [
                {
                    text: "Send",
                    id: "ts-next",
                    primary: true,
                    run: async () => {
                        const out = await twostepJson(["email-test", address.value.trim(), "--json"]);
                        notice("Sent a test mail to " + out.sent_to + ".");
                        closeModal();
                    },
                },
                { text: "Cancel", id: "ts-cancel", run: closeModal },
            ]);
        },
    };

    function confirmAction(title, text, label, run, danger) {
        modal(title, [para(text)], [
            { text: label, id: "ts-confirm", primary: !danger, danger, run },
            { text: "Cancel", id: "ts-cancel", run: closeModal },
        ]);
    }

    async function enrollApp(u) {
        const info = await twostepJson(["enroll", u.user, "--begin", "--json"]);
        modal("Enroll " + u.user, qrNodes(info).concat([codeInput("ts-code", "Code shown by the app")]), [
            {
                text: "Confirm",
                id: "ts-confirm",
                primary: true,
                run: async () => {
                    const code = $("ts-code").value.replace(/\s+/g, "");
                    if (!/^[0-9]{6,8}$/.test(code))
                        throw new Error("Type the 6 or 8 digit code the app shows.");
                    try {
                        const out = await twostepJson(["enroll", u.user, "--confirm-stdin", "--id", info.id, "--json"], code + "\n");
                        showCodes(u.user, out.emergency_codes, "Two-step login is on for " + u.user);
                    } catch (e) {
                        $("ts-code").value = "";
                        throw e;
                    }
                },
            },
            { text: "Cancel", id: "ts-cancel", run: closeModal },
        ]);
    }

    function enrollEmail(u, address) {
        if (!address)
            throw new Error("Codes by email need the address they are mailed to.");
        return confirmByMail(u, ["enroll", u.user, "--method", "email", "--email", address, "--json"], null);
    }

    /* Commands that mail a code and read it back on standard input (JSON lines). */
    async function confirmByMail(u, args, doneText) {
        let codes = null;
        await twostepEvents(args, (ev, proc) => {
            if (ev.event === "sent") {
                modal("Code sent to " + ev.to, [para("Type the code from the mail sent to " + ev.to + "."), codeInput("ts-code", "Code from the mail")], [
                    {
                        text: "Confirm",
                        id: "ts-confirm",
                        primary: true,
                        run: () => {
                            const code = $("ts-code").value.replace(/\s+/g, "");
                            if (!/^[0-9]{4,10}$/.test(code))
                                throw new Error("Type the code from the mail.");
                            proc.input(code + "\n", true);
                        },
                    },
                    { text: "Cancel", id: "ts-cancel", run: closeModal },
                ]);
            } else if (ev.event === "mismatch") {
                modalError(new Error("That code does not match (" + ev.tries_left + " tries left)."));
                $("ts-code").value = "";
            } else if (ev.event === "enrolled") {
                codes = ev.emergency_codes;
            }
        }).then(() => {
            twostepEvents.current = null;
            if (codes) {
                showCodes(u.user, codes, "Two-step login is on for " + u.user);
            } else {
                notice(doneText);
                closeModal();
            }
        });
    }

    /* ---- policy ---- */
    const LIST = (v) => v.join(", ");
    const POLICY = [
        // [element, key, read (config value -> field), write (field -> CLI value)]
        ["pol-all", "unenrolled", (v) => v === "deny", (c) => (c ? "deny" : "allow")],
        ["pol-enforce-users", "policy.enforce_users", LIST, (v) => v],
        ["pol-enforce-groups", "policy.enforce_groups", LIST, (v) => v],
        ["pol-exempt-users", "policy.exempt_users", LIST, (v) => v],
        ["pol-exempt-groups", "policy.exempt_groups", LIST, (v) => v],
        ["pol-enroll-at-login", "policy.on_unenrolled", (v) => v === "enroll", (c) => (c ? "enroll" : "deny")],
        ["pol-trusted", "policy.trusted_networks", LIST, (v) => v],
        ["pol-trust-local", "policy.trust_local", (v) => v, (c) => String(c)],
        ["pol-grace", "policy.grace_period", String, (v) => v],
        ["pol-max-failures", "lockout.max_failures", String, (v) => v],
        ["pol-max-failures-user", "lockout.max_failures_user", String, (v) => v],
        ["pol-window", "lockout.window_secs", String, (v) => v],
        ["pol-duration", "lockout.duration_secs", String, (v) => v],
    ];

    function fieldValue(node) {
        return node.type === "checkbox" ? node.checked : node.value.trim();
    }

    async function loadPolicy() {
        try {
            config = await twostepJson(["config", "get", "--json"]);
        } catch (e) {
            config = null;
            showError("Could not read the configuration (twostep config get --json)", e);
            return;
        }
        $("pol-file").textContent = config.path + (config.exists ? "" : " (missing: built-in defaults; saving creates it)");
        POLICY.forEach(([id, key, read]) => {
            const node = $(id);
            const value = read(config.values[key]);
            if (node.type === "checkbox") node.checked = value;
            else node.value = value;
        });
    }

    async function savePolicy(ev) {
        ev.preventDefault();
        if (!config) return;
        const args = ["config", "set"];
        POLICY.forEach(([id, key, read, write]) => {
            const node = $(id);
            const now = fieldValue(node);
            const before = read(config.values[key]);
            if (now !== before) args.push(key, write(now));
        });
        if (args.length === 2) {
            $("pol-status").textContent = "Nothing changed.";
            return;
        }
        args.push("--expect-hash", config.hash, "--json");
        $("pol-save").disabled = true;
        try {
            config = await twostepJson(args);
            await loadPolicy();
            $("pol-status").textContent = "Saved.";
            showError("", null);
            loadUsers();
        } catch (e) {
            // Never overwrite blindly: on any refusal (changed meanwhile, would not load) the
            // page shows the file as it is now.
            await loadPolicy();
            $("pol-status").textContent = "";
            showError("Not saved; the page now shows the settings as they are", e);
            $("ts-error").scrollIntoView();
        } finally {
            $("pol-save").disabled = false;
        }
    }

    /* ---- health ---- */
    async function loadDoctor() {
        const list = $("ts-doctor");
        list.textContent = "";
        // doctor has no --json (yet): its lines are shown as they are. It exits 1 when a check
        // fails, so its output is collected as it streams.
        let out = "";
        let failed = null;
        await new Promise((resolve) => {
            const proc = cockpit.spawn(["twostep", "doctor"], { superuser: "require", err: "out" });
            proc.stream((data) => { out += data; });
            proc.then(resolve, (ex) => { failed = ex; resolve(); });
        });
        if (failed && failed.exit_status === undefined && !out) {
            showError("Could not run twostep doctor", cliError(failed));
            return;
        }
        out.split("\n").filter((l) => l.trim()).forEach((line) => {
            const fail = /^FAIL\b/.test(line);
            list.appendChild(el("li", { class: fail ? "ts-fail" : "ts-ok", text: line }));
        });
    }

    /* ---- tabs and start ---- */
    function showTab(name) {
        document.querySelectorAll("#ts-tabs .pf-c-tabs__item").forEach((item) => item.classList.toggle("pf-m-current", item.dataset.tab === name));
        ["users", "policy", "health", "self"].forEach((p) => { $("panel-" + p).hidden = p !== name; });
        if (name === "health") loadDoctor();
        if (name === "policy") loadPolicy();
        if (name === "self") window.TwostepSelf.show();
    }

    /* With administrative access: every user, and the admin's own account as a tab. Without
     * it (a user who may not use sudo, or an admin with limited access): only the user's own
     * account (self.js, run as that user), and nothing of the admin part runs. */
    function setAdmin(allowed) {
        admin = allowed;
        $("ts-admin-needed").hidden = allowed !== false;
        $("ts-tabs").hidden = !allowed;
        document.querySelectorAll(".ts-panel").forEach((p) => { p.hidden = true; });
        if (allowed) {
            showTab("users");
            loadUsers();
        } else if (allowed === false) {
            $("panel-self").hidden = false;
            window.TwostepSelf.show();
        }
    }

    document.addEventListener("DOMContentLoaded", () => {
        document.querySelectorAll("#ts-tabs .pf-c-tabs__item").forEach((item) => {
            item.querySelector("button").addEventListener("click", () => showTab(item.dataset.tab));
        });
        $("ts-search").addEventListener("input", renderUsers);
        $("ts-filter").addEventListener("change", renderUsers);
        $("ts-refresh").addEventListener("click", loadUsers);
        $("pol-form").addEventListener("submit", savePolicy);
        $("pol-revert").addEventListener("click", () => { loadPolicy(); $("pol-status").textContent = ""; });
        $("ts-doctor-run").addEventListener("click", loadDoctor);
        $("ts-tabs").hidden = true;
        document.querySelectorAll(".ts-panel").forEach((p) => { p.hidden = true; });

        // Cockpit's "limited access": without superuser rights the admin part shows nothing and
        // runs nothing; the page shows the user's own account instead (setAdmin).
        const permission = cockpit.permission({ admin: true });
        const update = () => { if (permission.allowed !== null && permission.allowed !== admin) setAdmin(permission.allowed); };
        permission.addEventListener("changed", update);
        update();
    });
}());
