import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import TelemetryModel

/// The NOC's web view, served by the collector under `/ui`: server-rendered HTML with SVG charts drawn
/// here, one stylesheet from the same origin, no script. Operators log in with their API token; the
/// session lives in the database (any collector process knows it), its id in an HttpOnly, SameSite=Strict
/// cookie, and every form carries the session's CSRF token. Device pages need a stated reason and are
/// audited like the API's reads.
public struct Dashboard: Sendable {
    let api: CollectorAPI

    public init(api: CollectorAPI) { self.api = api }

    static let sessionCookie = "meetpunt_session"
    static let loginCSRFCookie = "meetpunt_csrf"
    /// A dashboard login lasts this long, whatever is done with it.
    static let sessionMilliseconds: Int64 = 8 * 3_600_000
    /// A device whose last report is older than this is stale on the fleet page.
    static let staleMilliseconds: Int64 = 15 * 60_000
    static let maxDeviceRows = 500
    static let ranges: [(name: String, ms: Int64)] = [("1h", 3_600_000), ("6h", 6 * 3_600_000), ("24h", 86_400_000), ("7d", 7 * 86_400_000)]

    // MARK: Sessions

    struct Session {
        let web: WebSession
        let principal: Principal
    }

    /// The request's live session, or nil (no cookie, unknown, expired, or its token revoked).
    func session(_ request: Request) async throws -> Session? {
        guard let id = request.cookies[Self.sessionCookie]?.value, !id.isEmpty, id.count <= 128 else { return nil }
        guard let web = try await api.store.webSession(idHash: Self.hash(id), nowMs: api.clock()), !web.isLoginLink,
              let token = try await api.store.token(id: web.tokenID), token.revokedAtMs == nil,
              token.role == .operator_ || token.role == .admin else { return nil }
        return Session(web: web, principal: Principal(token: token))
    }

    static func hash(_ text: String) -> [UInt8] { Array(SHA256.hash(data: Data(text.utf8))) }

    static func randomToken() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }  // SystemRandomNumberGenerator: the OS's CSPRNG
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Constant-time comparison of two secrets.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// `Secure` when this collector serves TLS, or when the proxy in front of it says the browser came
    /// over HTTPS (`X-Forwarded-Proto: https`).
    func cookie(_ name: String, _ value: String, maxAge: Int?, request: Request) -> Cookie {
        let https = api.configuration.tls != nil || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return Cookie(name: name, value: value, maxAge: maxAge, path: "/ui", secure: https, httpOnly: true, sameSite: .strict)
    }

    /// Where a login goes next: only a dashboard path of this site.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/ui/"), !next.hasPrefix("//"), !next.contains("\\"), next.count <= 512,
              next.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else { return "/ui/fleet" }
        return next
    }

    func redirect(_ location: String) -> Response {
        var r = Response(status: .seeOther)
        r.headers[.location] = location
        r.headers[.cacheControl] = "no-store"
        return r
    }

    func toLogin(_ request: Request) -> Response {
        let next = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        return redirect("/ui/login?next=" + Self.percentEncode(next))
    }

    func page(_ status: HTTPResponse.Status = .ok, title: String, session: Session?, body: String) -> Response {
        var html = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        html += "<title>\(HTML.escape(title)) · Meetpunt</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body>"
        html += "<header><a class=\"brand\" href=\"/ui/fleet\">Meetpunt</a>"
        if let session {
            html += "<nav><a href=\"/ui/fleet\">Fleet</a></nav><span class=\"who\">\(HTML.escape(session.principal.actor))</span>"
            html += "<form id=\"logout\" method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(session.web.csrf))\">"
            html += "<button type=\"submit\">Log out</button></form>"
        }
        html += "</header><main>" + body + "</main></body></html>"
        var r = Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
        Self.secure(&r)
        return r
    }

    /// No script may run, nothing is loaded from elsewhere, forms post only here, and nobody frames the page.
    static func secure(_ r: inout Response) {
        r.headers[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        r.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        r.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        r.headers[.cacheControl] = "no-store"
    }

    // MARK: Forms

    /// An `application/x-www-form-urlencoded` body, bounded.
    static func form(_ request: Request) async throws -> [String: String] {
        var body = try await request.body.collect(upTo: 16 * 1024)
        let text = body.readString(length: body.readableBytes) ?? ""
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = decode(String(parts[0])), value = parts.count > 1 ? decode(String(parts[1])) : ""
            out[key] = value
        }
        return out
    }

    /// The query string as a form sends it: `+` is a space and `%2B` a plus (Hummingbird's
    /// `queryParameters` decodes percent escapes only, so a GET form's spaces would stay `+`).
    static func query(_ request: Request) -> [String: String] {
        var out: [String: String] = [:]
        for pair in (request.uri.query ?? "").split(separator: "&").prefix(32) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[decode(String(parts[0]))] = parts.count > 1 ? decode(String(parts[1])) : ""
        }
        return out
    }

    static func decode(_ s: String) -> String {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
    }

    static func percentEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    func refused(_ session: Session?) -> Response {
        page(.forbidden, title: "Refused", session: session,
             body: "<h1>Refused</h1><p id=\"csrf-error\">This form was not sent by this dashboard session (its CSRF token is missing or wrong). Reload the page and try again.</p>")
    }

    // MARK: Login and logout

    public func loginPage(_ request: Request) async throws -> Response {
        let next = Self.safeNext(Self.query(request)["next"])
        if try await session(request) != nil { return redirect(next) }
        return loginForm(next: next, error: nil, status: .ok, request: request)
    }

    func loginForm(next: String, error: String?, status: HTTPResponse.Status, request: Request) -> Response {
        let csrf = Self.randomToken()
        var body = "<h1>Log in</h1>"
        if let error { body += "<p id=\"login-error\" class=\"error\">\(HTML.escape(error))</p>" }
        body += "<form id=\"login\" method=\"post\" action=\"/ui/login\">"
        body += "<input type=\"hidden\" name=\"csrf\" value=\"\(csrf)\"><input type=\"hidden\" name=\"next\" value=\"\(HTML.escape(next))\">"
        body += "<label>Operator token <input name=\"token\" type=\"password\" autocomplete=\"current-password\" required></label>"
        body += "<button id=\"login-submit\" type=\"submit\">Log in</button></form>"
        body += "<p class=\"hint\">An operator or admin API token (<code>meetpunt-collector token add --role operator</code>).</p>"
        var r = page(status, title: "Log in", session: nil, body: body)
        r.setCookie(cookie(Self.loginCSRFCookie, csrf, maxAge: 1800, request: request))
        return r
    }

    public func login(_ request: Request) async throws -> Response {
        let form = try await Self.form(request)
        let next = Self.safeNext(form["next"])
        guard let sent = form["csrf"], let expected = request.cookies[Self.loginCSRFCookie]?.value, Self.same(sent, expected) else {
            return refused(nil)
        }
        let token = form["token"] ?? ""
        let hash = BearerToken.hash(token)
        guard !token.isEmpty, let (record, stored) = try await api.store.token(hash: hash), BearerToken.equal(hash, stored),
              record.revokedAtMs == nil, record.role == .operator_ || record.role == .admin else {
            return loginForm(next: next, error: "That token is not a valid operator or admin token.", status: .unauthorized, request: request)
        }
        let id = Self.randomToken(), now = api.clock()
        try await api.store.createWebSession(WebSession(idHash: Self.hash(id), tokenID: record.id, csrf: Self.randomToken(),
                                                        createdAtMs: now, expiresAtMs: now + Self.sessionMilliseconds))
        try await api.store.appendAudit(AuditEntry(atMs: now, actor: Principal(token: record).actor, action: "dashboard login",
                                                   deviceID: nil, reason: nil, outcome: "ok", detail: nil))
        var r = redirect(next)
        r.setCookie(cookie(Self.sessionCookie, id, maxAge: Int(Self.sessionMilliseconds / 1000), request: request))
        r.setCookie(cookie(Self.loginCSRFCookie, "", maxAge: 0, request: request))
        return r
    }

    /// Makes a one-time login link for `token` (an operator or admin token), valid `minutes`: the path to
    /// open, with the code. Only the code's hash is stored; it works once.
    public func loginLink(token: TokenRecord, minutes: Int) async throws -> String {
        let code = Self.randomToken(), now = api.clock()
        try await api.store.createWebSession(WebSession(idHash: Self.hash(code), tokenID: token.id, csrf: Self.randomToken(),
                                                        createdAtMs: now, expiresAtMs: now + Int64(minutes) * 60_000, isLoginLink: true))
        return "/ui/login/once?code=" + code
    }

    /// `GET /ui/login/once?code=…`: exchanges a one-time login link for a session.
    public func loginOnce(_ request: Request) async throws -> Response {
        let code = Self.query(request)["code"] ?? ""
        guard !code.isEmpty, code.count <= 128, let link = try await api.store.webSession(idHash: Self.hash(code), nowMs: api.clock()), link.isLoginLink,
              try await api.store.deleteWebSession(idHash: link.idHash),  // once: whoever deletes it first logs in
              let record = try await api.store.token(id: link.tokenID), record.revokedAtMs == nil,
              record.role == .operator_ || record.role == .admin else {
            return loginForm(next: "/ui/fleet", error: "That login link is not valid: it was used already, has expired, or its token was revoked.",
                             status: .unauthorized, request: request)
        }
        let id = Self.randomToken(), now = api.clock()
        try await api.store.createWebSession(WebSession(idHash: Self.hash(id), tokenID: record.id, csrf: Self.randomToken(),
                                                        createdAtMs: now, expiresAtMs: now + Self.sessionMilliseconds))
        try await api.store.appendAudit(AuditEntry(atMs: now, actor: Principal(token: record).actor, action: "dashboard login",
                                                   deviceID: nil, reason: nil, outcome: "ok", detail: "one-time link"))
        var r = redirect("/ui/fleet")
        r.setCookie(cookie(Self.sessionCookie, id, maxAge: Int(Self.sessionMilliseconds / 1000), request: request))
        return r
    }

    public func logout(_ request: Request) async throws -> Response {
        guard let s = try await session(request) else { return redirect("/ui/login") }
        let form = try await Self.form(request)
        guard let sent = form["csrf"], Self.same(sent, s.web.csrf) else { return refused(s) }
        try await api.store.deleteWebSession(idHash: s.web.idHash)
        try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: s.principal.actor, action: "dashboard logout",
                                                   deviceID: nil, reason: nil, outcome: "ok", detail: nil))
        var r = redirect("/ui/login")
        r.setCookie(cookie(Self.sessionCookie, "", maxAge: 0, request: request))
        return r
    }

    // MARK: Fleet page

    public func fleetPage(_ request: Request) async throws -> Response {
        guard let s = try await session(request) else { return toLogin(request) }
        let now = api.clock()
        // It lists every device and per-device Wi-Fi figures, as `GET /v1/devices` does: audited like it.
        try await api.store.appendAudit(AuditEntry(atMs: now, actor: s.principal.actor, action: "view fleet page", deviceID: nil,
                                                   reason: nil, outcome: "ok", detail: nil))
        let devices = try await api.store.devices()
        let reporting = devices.filter { ($0.lastReportAtMs ?? 0) >= now - Self.staleMilliseconds }
        let stale = devices.filter { $0.lastReportAtMs != nil && $0.lastReportAtMs! < now - Self.staleMilliseconds }
        let never = devices.count - reporting.count - stale.count

        var body = "<h1>Fleet</h1><section class=\"tiles\">"
        body += "<div class=\"tile\"><span id=\"devices-reporting\" class=\"big\">\(reporting.count)</span> reporting</div>"
        body += "<div class=\"tile\"><span id=\"devices-stale\" class=\"big\">\(stale.count)</span> stale (no report for 15 min)</div>"
        body += "<div class=\"tile\"><span id=\"devices-never\" class=\"big\">\(never)</span> never reported</div></section>"

        // Fleet distributions from the aggregates merged at ingest: percentiles of merged sketches.
        let from = now - 6 * 3_600_000
        body += "<h2>Fleet distributions, last 6 hours</h2><p class=\"hint\">Percentiles over every device's windows, from sketches merged at ingest (5-minute buckets); a cohort's bucket fewer than \(api.configuration.fleetMinReports) report\(api.configuration.fleetMinReports == 1 ? "" : "s") contributed to is withheld.</p>"
        for (metric, title, cohort, quantiles) in [
            ("link.rx_rate", "Receive throughput per interface", nil as String?, [0.5, 0.9, 0.99]),
            ("wifi.station.signal_dbm", "Wi-Fi client signal", nil, [0.1, 0.5, 0.9]),
            ("lan.clients", "LAN clients per device", nil, [0.5, 0.9, 1.0]),
            ("traffic.tcp.rtt", "TCP round-trip time, WAN leg", "leg=wan", [0.5, 0.9, 0.99]),
        ] {
            body += try await fleetChart(metric: metric, title: title, cohortContaining: cohort, quantiles: quantiles, fromMs: from, toMs: now)
        }

        // Worst Wi-Fi and clients per device, from each device's newest report.
        let latest = try await api.store.latestWindows(
            metrics: ["wifi.station.signal_dbm", "wifi.station.snr_db", "wifi.station.tx_retries", "wifi.station.tx_packets",
                      "wifi.radio.channel_utilisation", "lan.clients"],
            sinceMs: now - Self.staleMilliseconds, cutoffs: api.policy.cutoffs(nowMs: now))
        body += worstWifiTable(latest)

        let h = api.metrics.health
        body += "<section id=\"ingest-health\"><h2>Ingest and purge</h2><p class=\"hint\">Since this collector process started.</p><table><tbody>"
        body += "<tr><th>Reports stored</th><td><span id=\"reports-stored\">\(h.stored)</span></td></tr>"
        body += "<tr><th>Duplicates acknowledged</th><td><span id=\"reports-duplicate\">\(h.duplicates)</span></td></tr>"
        let rejected = h.rejected.values.reduce(0, +)
        body += "<tr><th>Reports rejected</th><td><span id=\"reports-rejected\">\(rejected)</span>"
        if !h.rejected.isEmpty { body += " (" + h.rejected.sorted { $0.key < $1.key }.map { "\(HTML.escape($0.key)) \($0.value)" }.joined(separator: ", ") + ")" }
        body += "</td></tr><tr><th>Purges</th><td>\(h.purgeRuns) completed, \(h.purgeFailures) failed"
        if let last = h.lastPurgeMs { body += "; last \(Self.age(now - last)) ago" }
        body += "</td></tr></tbody></table></section>"

        body += "<section id=\"agent-drops\"><h2>Drops reported by agents</h2>"
        if h.agentDrops.isEmpty {
            body += "<p>No agent reported a drop since this collector process started.</p>"
        } else {
            body += "<table><thead><tr><th>What</th><th>Count</th></tr></thead><tbody>"
            for (kind, n) in h.agentDrops.sorted(by: { $0.key < $1.key }) {
                body += "<tr data-kind=\"\(HTML.escape(kind))\"><td>\(HTML.escape(kind.replacingOccurrences(of: "_", with: " ")))</td><td>\(UnitFormat.trimmed(n))</td></tr>"
            }
            body += "</tbody></table>"
        }
        body += "</section>"

        body += "<h2>Devices</h2><table id=\"devices\"><thead><tr><th>Device</th><th>Status</th><th>Last report</th><th>Reports</th></tr></thead><tbody>"
        let ordered = devices.sorted { a, b in
            let sa = (a.lastReportAtMs ?? 0) >= now - Self.staleMilliseconds, sb = (b.lastReportAtMs ?? 0) >= now - Self.staleMilliseconds
            return sa != sb ? !sa : a.id < b.id  // stale and silent ones first: they need looking at
        }
        for d in ordered.prefix(Self.maxDeviceRows) {
            let status = d.lastReportAtMs == nil ? "never reported" : (d.lastReportAtMs! >= now - Self.staleMilliseconds ? "reporting" : "stale")
            let last = d.lastReportAtMs.map { Self.age(now - $0) + " ago" } ?? "–"
            body += "<tr data-device=\"\(HTML.escape(d.id))\"><td><a href=\"/ui/devices/\(Self.percentEncode(d.id))\">\(HTML.escape(d.id))</a></td>"
            body += "<td class=\"status-\(status.replacingOccurrences(of: " ", with: "-"))\">\(status)</td><td>\(last)</td><td>\(d.reports)</td></tr>"
        }
        body += "</tbody></table>"
        if devices.count > Self.maxDeviceRows { body += "<p class=\"hint\">\(devices.count - Self.maxDeviceRows) more devices not listed.</p>" }
        return page(title: "Fleet", session: s, body: body)
    }

    func fleetChart(metric: String, title: String, cohortContaining: String?, quantiles: [Double], fromMs: Int64, toMs: Int64) async throws -> String {
        let unit = MetricCatalog.descriptor(named: metric)?.unit ?? ""
        let cells = try await api.store.fleet(metric: metric, bucketSeconds: 300, fromMs: fromMs, toMs: toMs,
                                              cutoffMs: api.policy.cutoffMs(.fleet, nowMs: api.clock()))
        var byBucket: [Int64: FleetCell] = [:]
        // The threshold holds per cohort cell, before cells are merged: one report can be in several
        // cohorts (two bands), so merged report counts would overstate how many households a point covers.
        for c in cells where c.reports >= api.configuration.fleetMinReports
            && (cohortContaining.map { c.key.cohort.split(separator: ",").contains(Substring($0)) } ?? true) {
            if var m = byBucket[c.key.bucketStartMs] { m.merge(c); byBucket[c.key.bucketStartMs] = m } else { byBucket[c.key.bucketStartMs] = c }
        }
        let buckets = byBucket.sorted { $0.key < $1.key }
        let series = quantiles.map { q in
            SVGChart.Series(label: q == 1 ? "max" : "p\(UnitFormat.trimmed(q * 100))",
                            points: buckets.compactMap { b in
                                (q == 1 ? b.value.max : b.value.sketch?.quantile(q)).map { (b.key, $0) }
                            })
        }
        return SVGChart(metric: metric, title: title, unit: unit, fromMs: fromMs, toMs: toMs, series: series).render()
    }

    func worstWifiTable(_ latest: [StoredWindow]) -> String {
        struct Row { var signal = Double.infinity, snr = Double.infinity, retries = 0.0, packets = 0.0, utilisation = 0.0, stations = 0, clients = 0.0 }
        var rows: [String: Row] = [:]
        for w in latest where w.dataClass != DataClass.troubleshooting.rawValue {  // a session's windows would count twice
            var r = rows[w.deviceID] ?? Row()
            switch w.metric {
            case "wifi.station.signal_dbm": r.signal = min(r.signal, w.min); r.stations += 1
            case "wifi.station.snr_db": r.snr = min(r.snr, w.min)
            case "wifi.station.tx_retries": r.retries += w.sum
            case "wifi.station.tx_packets": r.packets += w.sum
            case "wifi.radio.channel_utilisation": r.utilisation = max(r.utilisation, w.mean)
            case "lan.clients": r.clients += w.last
            default: break
            }
            rows[w.deviceID] = r
        }
        var html = "<h2>Worst Wi-Fi</h2><p class=\"hint\">From each device's newest report: the weakest client signal and SNR, retries per transmitted packet, the busiest radio's channel utilisation, and LAN clients.</p>"
        html += "<table id=\"worst-wifi\"><thead><tr><th>Device</th><th>Weakest signal</th><th>Lowest SNR</th><th>Retries</th><th>Channel busy</th><th>Wi-Fi clients</th><th>LAN clients</th></tr></thead><tbody>"
        let worst = rows.filter { $0.value.stations > 0 }.sorted { ($0.value.signal, $0.key) < ($1.value.signal, $1.key) }.prefix(10)
        for (device, r) in worst {
            html += "<tr data-device=\"\(HTML.escape(device))\"><td><a href=\"/ui/devices/\(Self.percentEncode(device))\">\(HTML.escape(device))</a></td>"
            html += "<td>\(r.signal.isFinite ? UnitFormat.value(r.signal, unit: "dbm") : "–")</td><td>\(r.snr.isFinite ? UnitFormat.value(r.snr, unit: "decibels") : "–")</td>"
            html += "<td>\(r.packets > 0 ? UnitFormat.value(r.retries / r.packets, unit: "ratio") : "–")</td><td>\(UnitFormat.value(r.utilisation, unit: "ratio"))</td>"
            html += "<td>\(r.stations)</td><td>\(UnitFormat.trimmed(r.clients))</td></tr>"
        }
        if worst.isEmpty { html += "<tr><td colspan=\"7\">No device reported Wi-Fi clients in the last 15 minutes.</td></tr>" }
        html += "</tbody></table>"
        let clients = rows.values.map(\.clients).sorted()
        if !clients.isEmpty {
            html += "<p id=\"clients-per-device\">LAN clients per reporting device: median \(UnitFormat.trimmed(clients[clients.count / 2])), most \(UnitFormat.trimmed(clients.last!)) (\(clients.count) devices).</p>"
        }
        return html
    }

    static func age(_ ms: Int64) -> String {
        let s = max(0, ms / 1000)
        if s < 120 { return "\(s) s" }
        if s < 7200 { return "\(s / 60) min" }
        if s < 172_800 { return "\(s / 3600) h" }
        return "\(s / 86_400) d"
    }

    // MARK: Device page

    /// Charts in the order a support engineer reads them; only those with data are drawn.
    static let deviceCharts: [(metric: String, title: String)] = [
        ("link.rx_rate", "Receive throughput"), ("link.tx_rate", "Transmit throughput"),
        ("link.rx_errors", "Receive errors"), ("link.rx_dropped", "Receive drops"),
        ("traffic.tcp.rtt", "TCP round-trip time"), ("traffic.tcp.retransmissions", "TCP retransmissions"),
        ("wifi.radio.channel_utilisation", "Channel utilisation per radio"), ("wifi.radio.noise_dbm", "Noise floor per radio"),
        ("wifi.radio.stations", "Associated stations per radio"),
        ("wifi.station.signal_dbm", "Signal per Wi-Fi client"), ("wifi.station.snr_db", "SNR per Wi-Fi client"),
        ("wifi.station.tx_bitrate", "Transmit bitrate per Wi-Fi client"), ("wifi.station.tx_retries", "Retries per Wi-Fi client"),
        ("lan.clients", "LAN clients"), ("traffic.client.bytes", "Traffic per client"),
        ("system.cpu_busy", "CPU busy"),
    ]

    public func devicePage(_ request: Request, device: String) async throws -> Response {
        guard let s = try await session(request) else { return toLogin(request) }
        guard try await api.store.deviceExists(device) else {
            return page(.notFound, title: "Unknown device", session: s, body: "<h1>Unknown device</h1><p>No device \(HTML.escape(device)).</p>")
        }
        let q = Self.query(request)
        let rangeName = q["range"].flatMap { r in Self.ranges.first { $0.name == r }?.name } ?? "1h"
        let reason = CollectorAPI.sanitizeReason(q["reason"] ?? "", guard: api.validator.identifierGuard)
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            var body = "<h1>Device \(HTML.escape(device))</h1><p>Why are you looking at this household's data? The reason or ticket is written to the audit trail with your name.</p>"
            body += "<form id=\"reason-form\" method=\"get\" action=\"/ui/devices/\(Self.percentEncode(device))\">"
            body += "<input type=\"hidden\" name=\"range\" value=\"\(rangeName)\">"
            body += "<label>Reason or ticket <input name=\"reason\" required maxlength=\"200\"></label><button type=\"submit\">Show the device</button></form>"
            return page(title: "Device \(device)", session: s, body: body)
        }
        let now = api.clock()
        let span = Self.ranges.first { $0.name == rangeName }!.ms
        let from = now - span
        try await api.store.appendAudit(AuditEntry(atMs: now, actor: s.principal.actor, action: "view device page", deviceID: device,
                                                   reason: reason, outcome: "ok", detail: "range=\(rangeName)"))
        let windows = try await api.store.windows(device: device, metric: nil, fromMs: from, toMs: now + 1,
                                                  cutoffs: api.policy.cutoffs(nowMs: now), limit: 200_000)
        let reasonQuery = "reason=" + Self.percentEncode(reason)
        var body = "<h1>Device \(HTML.escape(device))</h1>"
        body += "<p class=\"ranges\">Range: " + Self.ranges.map { r in
            r.name == rangeName ? "<strong>\(r.name)</strong>" : "<a href=\"/ui/devices/\(Self.percentEncode(device))?range=\(r.name)&amp;\(HTML.escape(reasonQuery))\">\(r.name)</a>"
        }.joined(separator: " ") + " · reason: <em>\(HTML.escape(reason))</em> · <a id=\"export-link\" href=\"/ui/devices/\(Self.percentEncode(device))/export?\(HTML.escape(reasonQuery))\">export this device's data</a> (admins)</p>"

        body += try await sessionSection(device: device, session: s, nowMs: now, reasonQuery: reasonQuery)

        var byMetric: [String: [StoredWindow]] = [:]
        for w in windows { byMetric[w.metric, default: []].append(w) }
        var drawn = 0
        for (metric, title) in Self.deviceCharts {
            guard let ws = byMetric[metric], let d = MetricCatalog.descriptor(named: metric) else { continue }
            var bySeries: [String: [(Int64, Double)]] = [:]
            for w in ws {
                let label = Self.seriesLabel(w.labels)
                bySeries[label, default: []].append((w.windowEndMs, d.kind == .counterDelta ? w.sum : w.mean))
            }
            let series = bySeries.map { SVGChart.Series(label: $0.key, points: $0.value.sorted { $0.0 < $1.0 }) }
                .sorted { ($0.points.count, $1.label) > ($1.points.count, $0.label) }
            let unitTitle = d.kind == .counterDelta ? "\(title) (per window)" : title
            body += SVGChart(metric: metric, title: unitTitle, unit: d.unit, fromMs: from, toMs: now, series: series).render()
            drawn += 1
        }
        if drawn == 0 { body += "<p id=\"no-data\">This device sent no link, Wi-Fi or traffic data in the last \(rangeName).</p>" }
        return page(title: "Device \(device)", session: s, body: body)
    }

    func sessionSection(device: String, session s: Session, nowMs now: Int64, reasonQuery: String) async throws -> String {
        let csrf = "<input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(s.web.csrf))\">"
        let back = "<input type=\"hidden\" name=\"back\" value=\"\(HTML.escape(reasonQuery))\">"
        var html = "<section id=\"session\"><h2>Troubleshooting session</h2>"
        if let running = try await api.store.runningSession(device: device, nowMs: now) {
            html += "<p id=\"session-running\" data-session=\"\(running.id)\">Session \(running.id) is running: sampling every \(running.intervalSeconds) s, "
            html += "\(running.windowSeconds)-second windows, \(Self.age(running.endMs - now)) left. Started by \(HTML.escape(running.actor)): <em>\(HTML.escape(running.reason))</em>. "
            html += "Its data is kept as troubleshooting data (\(api.policy.maxAgeDays[.troubleshooting] ?? 0) days).</p>"
            html += "<form id=\"session-stop\" method=\"post\" action=\"/ui/devices/\(Self.percentEncode(device))/sessions/\(running.id)/stop\">\(csrf)\(back)"
            html += "<button type=\"submit\">Stop the session</button></form>"
        } else {
            let c = api.configuration.sessions
            html += "<p>No session is running; the device reports at its normal profile. A session samples every \(c.intervalSeconds) s in \(c.windowSeconds)-second windows, "
            html += "ends by itself, and is audited with its reason.</p>"
            html += "<form id=\"session-start\" method=\"post\" action=\"/ui/devices/\(Self.percentEncode(device))/sessions\">\(csrf)\(back)"
            html += "<label>Reason or ticket <input name=\"reason\" required maxlength=\"200\"></label>"
            html += "<label>Minutes <input name=\"minutes\" type=\"number\" min=\"1\" max=\"\(c.maxMinutes)\" value=\"\(c.defaultMinutes)\"></label>"
            html += "<button type=\"submit\">Start a session</button></form>"
        }
        let recent = try await api.store.sessions(device: device, limit: 5).filter { !$0.isRunning(at: now) }
        if !recent.isEmpty {
            html += "<table id=\"sessions\"><thead><tr><th>Session</th><th>Started</th><th>How it ended</th><th>By</th><th>Reason</th></tr></thead><tbody>"
            for r in recent {
                let ended = r.stoppedAtMs != nil ? "stopped by \(HTML.escape(r.stoppedBy ?? "?"))" : "ran out"
                html += "<tr><td>\(r.id)</td><td>\(Self.age(now - r.startedAtMs)) ago</td><td>\(ended)</td><td>\(HTML.escape(r.actor))</td><td>\(HTML.escape(r.reason))</td></tr>"
            }
            html += "</tbody></table>"
        }
        return html + "</section>"
    }

    /// `POST /ui/devices/{id}/sessions`: starts a session from the device page.
    public func startSession(_ request: Request, device: String) async throws -> Response {
        guard let s = try await session(request) else { return toLogin(request) }
        let form = try await Self.form(request)
        guard let sent = form["csrf"], Self.same(sent, s.web.csrf) else { return refused(s) }
        let back = "/ui/devices/\(Self.percentEncode(device))?" + Self.safeQuery(form["back"])
        let minutes = Int(form["minutes"] ?? "") ?? api.configuration.sessions.defaultMinutes
        do {
            _ = try await api.startSession(device: device, actor: s.principal.actor, reason: form["reason"] ?? "", seconds: minutes * 60)
        } catch let e as APIError {
            return page(e.status, title: "Session not started", session: s,
                        body: "<h1>Session not started</h1><p id=\"session-error\">\(HTML.escape(e.message))</p><p><a href=\"\(HTML.escape(back))\">Back to the device</a></p>")
        }
        return redirect(back)
    }

    /// `POST /ui/devices/{id}/sessions/{sid}/stop`.
    public func stopSession(_ request: Request, device: String, id: Int64) async throws -> Response {
        guard let s = try await session(request) else { return toLogin(request) }
        let form = try await Self.form(request)
        guard let sent = form["csrf"], Self.same(sent, s.web.csrf) else { return refused(s) }
        let back = "/ui/devices/\(Self.percentEncode(device))?" + Self.safeQuery(form["back"])
        do { try await api.stopSession(device: device, id: id, actor: s.principal.actor, reason: nil) } catch let e as APIError {
            return page(e.status, title: "Session not stopped", session: s,
                        body: "<h1>Session not stopped</h1><p id=\"session-error\">\(HTML.escape(e.message))</p><p><a href=\"\(HTML.escape(back))\">Back to the device</a></p>")
        }
        return redirect(back)
    }

    /// The device page's own query string (`reason=…`) carried through a form, or nothing.
    static func safeQuery(_ q: String?) -> String {
        guard let q, q.hasPrefix("reason="), q.count <= 700, q.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != "#" }) else { return "" }
        return q
    }

    /// A series' legend text: its labels without the label names a reader does not need.
    static func seriesLabel(_ labels: [String: String]) -> String {
        if labels.isEmpty { return "all" }
        return labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// `GET /ui/devices/{id}/export`: the subject-access export for admins, as a download; audited.
    public func export(_ request: Request, device: String) async throws -> Response {
        guard let s = try await session(request) else { return toLogin(request) }
        let reason = CollectorAPI.sanitizeReason(Self.query(request)["reason"] ?? "", guard: api.validator.identifierGuard)
        guard s.principal.token.role == .admin else {
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: s.principal.actor, action: "export device data", deviceID: device,
                                                       reason: reason, outcome: "denied", detail: "dashboard"))
            return page(.forbidden, title: "Export", session: s, body: "<h1>Export</h1><p>Exporting a household's data needs an admin token.</p>")
        }
        guard try await api.store.deviceExists(device) else {
            return page(.notFound, title: "Unknown device", session: s, body: "<h1>Unknown device</h1>")
        }
        try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: s.principal.actor, action: "export device data", deviceID: device,
                                                   reason: reason, outcome: "ok", detail: "dashboard json"))
        let data = try JSONEncoder().encode(try await api.exportData(device: device))
        var r = Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        r.headers[.contentDisposition] = "attachment; filename=\"meetpunt-\(device.filter { $0.isLetter || $0.isNumber || $0 == "-" }).json\""
        Self.secure(&r)
        return r
    }

    // MARK: Stylesheet

    public func stylesheet() -> Response {
        var r = Response(status: .ok, headers: [.contentType: "text/css; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: Self.css)))
        r.headers[.cacheControl] = "max-age=3600"
        return r
    }

    static let css = """
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2329;background:#f6f7f9}
        header{display:flex;gap:1.2em;align-items:center;padding:.6em 1.4em;background:#13334c;color:#fff}
        header a{color:#fff;text-decoration:none}.brand{font-weight:700;font-size:1.1em}.who{margin-left:auto;opacity:.85}
        header form{margin:0}header button{background:transparent;color:#fff;border:1px solid #8aa;border-radius:4px;padding:.2em .7em;cursor:pointer}
        main{max-width:940px;margin:0 auto;padding:1em 1.4em 3em}h1{font-size:1.5em;margin:.6em 0}h2{font-size:1.15em;margin:1.6em 0 .4em}
        .tiles{display:flex;gap:1em}.tile{background:#fff;border:1px solid #dde2e7;border-radius:6px;padding:.7em 1em;flex:1}
        .big{display:block;font-size:1.8em;font-weight:700}.hint{color:#5b6670;font-size:.9em}.error{color:#b00020}
        table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde2e7}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eef1f4}
        .status-stale,.status-never-reported{color:#b05a00;font-weight:600}
        svg.chart{display:block;background:#fff;border:1px solid #dde2e7;border-radius:6px;margin:.8em 0;max-width:100%;height:auto}
        svg .grid{stroke:#e6e9ed}svg .axis-line,svg .tick{stroke:#8a949e}svg text{font-size:11px;fill:#3c4650}
        svg .chart-title{font-size:13px;font-weight:600;fill:#1d2329}svg .unit{font-size:11px;fill:#5b6670}svg .empty{fill:#8a949e}
        form label{display:block;margin:.6em 0}input{font:inherit;padding:.3em .4em}button{font:inherit}
        """
}

extension CollectorAPI {
    /// A stated reason: printable characters only, bounded, and no raw identifiers (a ticket text may
    /// quote a customer's address).
    static func sanitizeReason(_ raw: String, guard identifierGuard: IdentifierGuard) -> String {
        identifierGuard.redact(String(String(raw.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init)).prefix(200)))
    }
}
