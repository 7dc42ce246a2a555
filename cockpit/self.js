/* twostep's Cockpit page, the part for every user: their own two-step login (docs/self-service.md).
 * Plain JavaScript, no build step.
 *
 * Like the admin part (twostep.js) it holds no logic of its own: every read and every change is
 * one run of `twostep self ... --json` (with `--stdin` for the secrets), whose JSON forms are
 * those of `twostep self` (docs/self-service.md). It runs WITHOUT superuser, as the logged-in user: the
 * command asks the root service twostep-self (its Unix socket) to act for the caller, and the
 * service learns who that is from the kernel (SO_PEERCRED), never from the page.
 *
 * Secrets (the password, codes) go to the command's standard input, one per line, never onto a
 * command line. Every string from the system is put into the page with textContent, never as
 * HTML. The QR code and key, and the emergency codes, are shown once and dropped when the
 * dialog closes.
 *
 * The command is spawned by its absolute path: a user's PATH on Debian does not include
 * /usr/sbin, where the twostep and cockpit-twostep packages install it.
 */
"use strict";

(function () {
    const TWOSTEP = "/usr/sbin/twostep";
    const $ = (id) => document.getElementById(id);

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

    function para(text, cls) {
        return el("p", { class: cls || "", text });
    }

    function timeText(t) {
        return new Date(t * 1000).toLocaleString();
    }

    /* ---- running `twostep self` ---- */

    /* An error of `twostep self`: its message for a human and its kind (wrong-password,
     * wrong-code, locked, refused, not-enrolled, already-enrolled, expired, limited,
     * unavailable, invalid, error; "missing" when the command is not installed). */
    class SelfError extends Error {
        constructor(message, kind) {
            super(message);
            this.kind = kind;
        }
    }

    /* Runs `twostep self ARGS... --json`, with `--stdin` and `lines` (the secrets, in the
     * order the command reads them) on its standard input when there are any (status and
     * history read none). Resolves with the parsed JSON object; rejects with a SelfError. */
    function self(args, lines) {
        const argv = [TWOSTEP, "self"].concat(args, lines ? ["--json", "--stdin"] : ["--json"]);
        return new Promise((resolve, reject) => {
            let proc;
            try {
                proc = cockpit.spawn(argv, { err: "message" });
            } catch (e) {
                reject(new SelfError(String(e), "error"));
                return;
            }
            proc.then((out) => {
                try {
                    resolve(JSON.parse(out));
                } catch (e) {
                    reject(new SelfError("twostep self " + args[0] + " printed something that is not JSON:\n" + out, "error"));
                }
            }, (ex, out) => {
                if (ex && ex.problem === "not-found") {
                    reject(new SelfError("The twostep command (" + TWOSTEP + ") is not installed on this machine: ask your administrator.", "missing"));
                    return;
                }
                // On failure the command prints {"error": ..., "kind": ...} on stdout.
                let parsed = null;
                try {
                    parsed = out ? JSON.parse(out) : null;
                } catch (e) { /* not JSON: fall back to stderr */ }
                if (parsed && parsed.error) {
                    reject(new SelfError(parsed.error, parsed.kind || "error"));
                    return;
                }
                const text = (ex && (ex.message || ex.problem)) || String(ex);
                reject(new SelfError(String(text).trim(), "error"));
            });
            // Always end standard input, with the secrets when there are any: the command must
            // never wait for input that is not coming.
            proc.input((lines || []).map((l) => l + "\n").join(""));
        });
    }

    /* What the page says above the command's own message, by kind. */
    const KIND_TITLE = {
        "wrong-password": "The password is not right",
        "wrong-code": "The code is not right",
        locked: "Locked after too many wrong answers",
        refused: "Not allowed",
        "not-enrolled": "Two-step login is not on for your account",
        "already-enrolled": "Two-step login is already on for your account",
        expired: "This step took too long",
        limited: "Too many attempts",
        unavailable: "Self-service is not available",
        invalid: "Not accepted",
        missing: "The twostep command is missing",
        error: "Something went wrong",
    };

    const KIND_HINT = {
        "wrong-code": "Type the code your app shows now, a code mailed to you, or one of your emergency codes.",
        expired: "Close this dialog and start again.",
        limited: "Wait a minute, then try again.",
        unavailable: "Ask your administrator to enable the service: systemctl enable --now twostep-self.socket",
        locked: "Wait until the lockout ends, or ask your administrator to unlock your account.",
    };

    function errorNodes(err) {
        const kind = (err && err.kind) || "error";
        const nodes = [el("p", { class: "pf-c-alert__title", text: KIND_TITLE[kind] || KIND_TITLE.error })];
        // (laid out as a plain block: .ts-self-alert in twostep.css)
        const message = err ? (err.message || String(err)) : "";
        nodes.push(el("pre", { class: "pf-c-alert__description ts-pre", text: message }));
        // The service's messages mostly say what to do already; the hint only adds what they
        // do not (e.g. the client of an older version).
        const hint = KIND_HINT[kind];
        if (hint && !(kind === "unavailable" && message.includes("twostep-self.socket")))
            nodes.push(el("p", { class: "pf-c-alert__description", text: hint }));
        return nodes;
    }

    function showError(err) {
        const box = $("self-error");
        box.textContent = "";
        if (err) {
            box.setAttribute("data-kind", err.kind || "error");
            errorNodes(err).forEach((n) => box.appendChild(n));
        } else {
            box.removeAttribute("data-kind");
        }
        box.hidden = !err;
    }

    function notice(text) {
        $("self-notice-text").textContent = text || "";
        $("self-notice").hidden = !text;
    }

    /* ---- status and history ---- */

    const STATE = {
        enabled: ["On", "pf-m-green", "Logins ask for a code after your password."],
        locked: ["Locked", "pf-m-red", "Too many wrong codes: logins are refused for now."],
        incomplete: ["Required, not set up", "pf-m-orange", "Your administrator requires two-step login for your account: turn it on before your next login."],
        disabled: ["Off", "", "Logins ask only for your password."],
        "not-enrolled": ["Off", "", "Logins ask only for your password."],
    };

    let status = null;

    /* Reads status and history and shows them. While it runs, #self-panel has
     * data-loading (the buttons are about to be replaced). */
    let loads = 0;
    async function load() {
        loads += 1;
        $("self-panel").dataset.loading = "1";
        try {
            await loadNow();
        } finally {
            loads -= 1;
            if (loads === 0) delete $("self-panel").dataset.loading;
        }
    }

    async function loadNow() {
        let st;
        try {
            st = await self(["status"]);
        } catch (e) {
            status = null;
            render();
            renderHistory(null);
            showError(e);
            return;
        }
        status = st;
        showError(null);
        render();
        try {
            renderHistory(await self(["history"]));
        } catch (e) {
            renderHistory(null);
        }
    }

    function enrolled() {
        return !!status && (status.state === "enabled" || status.state === "locked");
    }

    function row(label, value, id) {
        return el("div", { class: "ts-self-row" }, [
            el("dt", { text: label }),
            el("dd", { id: id || "", text: value }),
        ]);
    }

    function render() {
        const summary = $("self-summary");
        const actions = $("self-actions");
        summary.textContent = "";
        actions.textContent = "";
        $("self-user").textContent = status ? status.user : "";
        if (!status) {
            $("self-state").setAttribute("data-state", "");
            $("self-state").textContent = "";
            $("self-state").hidden = true;
            $("self-state-text").textContent = "";
            return;
        }
        const [label, colour, text] = STATE[status.state] || [status.state, "", ""];
        const badge = $("self-state");
        badge.className = "pf-c-label " + colour;
        badge.setAttribute("data-state", status.state);
        badge.textContent = label;
        badge.hidden = false;
        $("self-state-text").textContent = text;

        if (enrolled()) {
            summary.appendChild(row("Method", status.method === "email" ? "Codes by email" : "Authenticator app", "self-method"));
            summary.appendChild(row("Recovery address", status.email || "none", "self-email"));
            summary.appendChild(row("Emergency codes left", status.emergency_codes_left === null ? "-" : String(status.emergency_codes_left), "self-codes-left"));
        }
        if (status.locked_until)
            summary.appendChild(row("Locked until", timeText(status.locked_until), "self-locked-until"));
        if (status.enforced)
            summary.appendChild(row("Required", "Your administrator requires two-step login for your account.", "self-enforced"));

        const allowed = status.allowed || {};
        const button = (id, text, run, kind) => {
            const b = el("button", { class: "pf-c-button " + (kind || "pf-m-secondary"), type: "button", id, text });
            b.addEventListener("click", () => { notice(null); showError(null); run(); });
            actions.appendChild(b);
            return b;
        };
        if (!enrolled()) {
            if (allowed.enable !== false)
                button("self-enable", "Turn on two-step login…", enableDialog, "pf-m-primary");
        } else {
            if (allowed.codes !== false)
                button("self-codes", "New emergency codes…", codesDialog);
            if (allowed.add_device !== false && status.method !== "email")
                button("self-add-device", "Add a device…", addDeviceDialog);
            if (allowed.email !== false && status.email_enabled)
                button("self-change-email", status.email ? "Change recovery address…" : "Set recovery address…", emailDialog);
            if (status.email_enabled && (status.email || status.method === "email"))
                button("self-send-code", "Email me a code…", sendCodeDialog);
            if (allowed.disable !== false) {
                const off = button("self-disable", "Turn off…", disableDialog, "pf-m-danger");
                if (status.enforced) {
                    off.disabled = true;
                    off.title = "Your administrator requires two-step login for your account.";
                }
            }
        }
        const restricted = ["enable", "codes", "add_device", "email", "disable"].filter((k) => allowed[k] === false);
        if (restricted.length)
            actions.appendChild(para("Some changes are turned off by your administrator; ask them for those.", "ts-hint"));
    }

    function renderHistory(h) {
        const list = $("self-history");
        list.textContent = "";
        if (!h) {
            list.appendChild(el("li", { class: "ts-hint", text: "Not available." }));
            return;
        }
        const last = h.last_login;
        list.appendChild(el("li", {
            id: "self-last-login",
            text: last
                ? "Last two-step login: " + timeText(last.time) + " from " + (last.rhost || "this machine") + " (" + last.service + ", " + last.method + ")"
                : "No two-step login yet.",
        }));
        const failures = h.failures || [];
        list.appendChild(el("li", {
            id: "self-failures",
            class: failures.length ? "ts-warning" : "",
            text: failures.length
                ? failures.length + " recent wrong code" + (failures.length === 1 ? "" : "s") + ": " +
                  failures.map((f) => timeText(f.time) + " from " + (f.host || "this machine")).join("; ")
                : "No recent wrong codes.",
        }));
        const gates = h.open_gates || [];
        if (gates.length) {
            list.appendChild(el("li", {
                id: "self-gates",
                text: "File sharing (SMB) open after a two-step login from: " +
                    gates.map((g) => g.host + " until " + timeText(g.expires)).join("; "),
            }));
        }
    }

    /* ---- the dialog ---- */

    function modal(title, bodyNodes, buttons) {
        $("self-modal-title").textContent = title;
        const body = $("self-modal-body");
        body.textContent = "";
        bodyNodes.forEach((n) => body.appendChild(n));
        modalError(null);
        const footer = $("self-modal-footer");
        footer.textContent = "";
        buttons.forEach((b) => {
            const cls = b.primary ? "pf-m-primary" : b.danger ? "pf-m-danger" : "pf-m-link";
            const button = el("button", { class: "pf-c-button " + cls, type: "button", id: b.id, text: b.text });
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
        $("self-modal-backdrop").hidden = false;
        const first = body.querySelector("input, select");
        if (first) first.focus();
    }

    function modalError(err) {
        const box = $("self-modal-error");
        box.textContent = "";
        if (err) {
            box.setAttribute("data-kind", err.kind || "error");
            errorNodes(err).forEach((n) => box.appendChild(n));
        } else {
            box.removeAttribute("data-kind");
        }
        box.hidden = !err;
    }

    function closeModal() {
        $("self-modal-backdrop").hidden = true;
        $("self-modal-body").textContent = "";
        $("self-print").textContent = "";
        load();
    }

    function field(id, label, type, hint) {
        const input = el("input", { class: "pf-c-form-control", id, type: type || "text" });
        if (type === "password") input.autocomplete = "current-password";
        return el("div", { class: "pf-c-form__group" }, [
            el("label", { class: "pf-c-form__label", htmlFor: id }, [el("span", { class: "pf-c-form__label-text", text: label })]),
            input,
        ].concat(hint ? [el("p", { class: "pf-c-form__helper-text ts-hint", text: hint })] : []));
    }

    function codeField(id, label) {
        const group = field(id, label, "text");
        const input = group.querySelector("input");
        input.className = "pf-c-form-control ts-code-input";
        input.inputMode = "numeric";
        input.autocomplete = "one-time-code";
        return group;
    }

    const passwordField = () => field("self-password", "Your password", "password");
    const currentCodeField = () => field("self-current-code", "A current code", "text",
        "From your authenticator app, a code mailed to you (Email me a code), or one of your emergency codes.");

    /* The value of an input, trimmed; spaces are dropped from codes. */
    function value(id, code) {
        const v = $(id).value;
        return code ? v.replace(/\s+/g, "") : v;
    }

    function need(v, what) {
        if (!v) throw new SelfError("Type " + what + ".", "invalid");
        return v;
    }

    /* Clears the secret fields of the dialog after a refusal, so nothing is sent twice. */
    function clearSecrets() {
        ["self-password", "self-current-code", "self-code"].forEach((id) => { if ($(id)) $(id).value = ""; });
    }

    async function attempt(run) {
        try {
            return await run();
        } catch (e) {
            if (e.kind === "wrong-password" || e.kind === "wrong-code" || e.kind === "locked")
                clearSecrets();
            throw e;
        }
    }

    function qrNodes(info) {
        // The SVG comes from the command; as an <img> it can never run script in the page.
        const img = el("img", { id: "self-qr", class: "ts-qr", alt: "QR code for " + info.account, src: "data:image/svg+xml;base64," + btoa(info.qr_svg) });
        const key = (info.secret || "").replace(/\s+/g, "").replace(/(.{4})/g, "$1 ").trim();
        return [
            para("Scan this QR code with an authenticator app (Google or Microsoft Authenticator, Aegis, FreeOTP, …):"),
            img,
            el("p", {}, [document.createTextNode("Or type the key: "), el("code", { id: "self-secret", class: "ts-secret", text: key })]),
            para("Account " + info.account + ", issuer " + info.issuer + ", time-based, " + info.algorithm + ", " + info.digits + " digits, every " + info.period + " seconds.", "ts-hint"),
        ];
    }

    /* The emergency codes, shown once, with Print. */
    function showCodes(codes, heading) {
        const user = status ? status.user : "";
        const list = el("ul", { id: "self-codes-list", class: "ts-codes" }, codes.map((c) => el("li", { text: c })));
        const text = "Emergency codes for " + user + " (" + window.location.hostname + "), each works once:\n" + codes.join("\n") + "\n";
        $("self-print").textContent = "";
        $("self-print").appendChild(el("pre", { text }));
        modal(heading, [
            para("Each emergency code works once, instead of a code from your app: for when the phone is lost or not at hand. Print them or keep them in a password manager. They are shown only now."),
            list,
        ], [
            { text: "Print", id: "self-print-button", run: () => window.print() },
            { text: "Done", id: "self-done", primary: true, run: closeModal },
        ]);
    }

    /* ---- the actions (each one `twostep self` command) ---- */

    function enableDialog() {
        const nodes = [para("Two-step login asks for a code after your password at every login. First, confirm it is you:"), passwordField()];
        let method = null;
        let address = null;
        if (status && status.email_enabled) {
            method = el("select", { class: "pf-c-form-control", id: "self-method-choice" }, [
                el("option", { value: "totp", text: "Authenticator app on your phone" }),
                el("option", { value: "email", text: "Codes by email" }),
            ]);
            address = field("self-address", "Address for the codes (confirmed with a mailed code)", "email");
            address.hidden = true;
            method.addEventListener("change", () => { address.hidden = method.value !== "email"; });
            nodes.push(el("div", { class: "pf-c-form__group" }, [
                el("label", { class: "pf-c-form__label", htmlFor: "self-method-choice" }, [el("span", { class: "pf-c-form__label-text", text: "Method" })]),
                method,
            ]), address);
        }
        modal("Turn on two-step login", nodes, [
            {
                text: "Next",
                id: "self-next",
                primary: true,
                run: () => attempt(async () => {
                    const password = need(value("self-password"), "your password");
                    if (method && method.value === "email") {
                        const to = need(value("self-address").trim(), "the address for the codes");
                        const out = await self(["enable", "--method", "email", "--email", to], [password]);
                        mailedCodeStep(out, ["enable", "--confirm", out.id], (res) => showCodes(res.emergency_codes, "Two-step login is on"));
                    } else {
                        const info = await self(["enable"], [password]);
                        appStep(info);
                    }
                }),
            },
            { text: "Cancel", id: "self-cancel", run: closeModal },
        ]);
    }

    function appStep(info) {
        modal("Turn on two-step login", qrNodes(info).concat([
            para("Nothing changes until you type the code your app shows for this account:"),
            codeField("self-code", "Code shown by the app"),
        ]), [
            {
                text: "Confirm",
                id: "self-confirm",
                primary: true,
                run: () => attempt(async () => {
                    const code = need(value("self-code", true), "the code your app shows");
                    const out = await self(["enable", "--confirm", info.id], [code]);
                    showCodes(out.emergency_codes, "Two-step login is on");
                }),
            },
            { text: "Cancel", id: "self-cancel", run: closeModal },
        ]);
    }

    /* The second step of a change confirmed by mail: `out` is {"id", "sent_to"}; `confirm` the
     * arguments that take the mailed code; `done(result)` what follows. */
    function mailedCodeStep(out, confirm, done) {
        modal("Check your mail", [
            para("A code was mailed to " + out.sent_to + ". Type it here:"),
            codeField("self-code", "Code from the mail"),
        ], [
            {
                text: "Confirm",
                id: "self-confirm",
                primary: true,
                run: () => attempt(async () => {
                    const code = need(value("self-code", true), "the code from the mail");
                    done(await self(confirm, [code]));
                }),
            },
            { text: "Cancel", id: "self-cancel", run: closeModal },
        ]);
    }

    /* A dialog asking for the password and a current code, then running `args`. */
    function provedDialog(title, text, label, args, done, danger, extra) {
        modal(title, [para(text)].concat(extra || [], [passwordField(), currentCodeField()]), [
            {
                text: label,
                id: "self-confirm",
                primary: !danger,
                danger,
                run: () => attempt(async () => {
                    const a = typeof args === "function" ? args() : args;
                    const password = need(value("self-password"), "your password");
                    const code = need(value("self-current-code", true), "a current code");
                    done(await self(a, [password, code]));
                }),
            },
            { text: "Cancel", id: "self-cancel", run: closeModal },
        ]);
    }

    function codesDialog() {
        provedDialog("New emergency codes", "Your current emergency codes stop working and ten new ones are shown once.",
            "Make new codes", ["codes"], (out) => showCodes(out.emergency_codes, "Your new emergency codes"));
    }

    function addDeviceDialog() {
        provedDialog("Add a device", "Shows your QR code again, for a second phone or a new app. Anyone who sees it can make your codes.",
            "Show the QR code", ["add-device"], (info) => {
                modal("Add a device", qrNodes(info), [{ text: "Done", id: "self-done", primary: true, run: closeModal }]);
            });
    }

    function emailDialog() {
        const address = field("self-address", "New recovery address (confirmed with a mailed code)", "email");
        provedDialog(status && status.email ? "Change recovery address" : "Set recovery address",
            "Codes can be mailed to this address when your phone is not at hand.", "Send the code",
            () => ["email", need(value("self-address").trim(), "the new address")],
            (out) => mailedCodeStep(out, ["email", "--confirm", out.id], (res) => {
                notice("Your recovery address is now " + res.email + ".");
                closeModal();
            }), false, [address]);
    }

    function disableDialog() {
        provedDialog("Turn off two-step login", "Logins will ask only for your password. Your emergency codes stop working.",
            "Turn off", ["disable"], () => {
                notice("Two-step login is off for your account.");
                closeModal();
            }, true);
    }

    function sendCodeDialog() {
        modal("Email me a code", [para("Mails you a code that works once, for a login or as the current code of a change here."), passwordField()], [
            {
                text: "Send",
                id: "self-confirm",
                primary: true,
                run: () => attempt(async () => {
                    const out = await self(["send-code"], [need(value("self-password"), "your password")]);
                    notice("A code was mailed to " + out.sent_to + ".");
                    closeModal();
                }),
            },
            { text: "Cancel", id: "self-cancel", run: closeModal },
        ]);
    }

    /* ---- start: twostep.js shows this part (see index.html) ---- */
    let wired = false;
    function show() {
        if (!wired) {
            wired = true;
            $("self-refresh").addEventListener("click", () => { notice(null); load(); });
        }
        $("self-panel").hidden = false;
        load();
    }

    window.TwostepSelf = { show, load };
}());
