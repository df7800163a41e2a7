#!/usr/bin/python3
"""The browser side of the dashboard's acceptance test (issue 16): headless Chromium logs in to a
collector's /ui, loads the fleet page and one device page, and checks the rendered DOM; plain HTTP
checks the redirects, the cookie attributes and the CSRF refusals that a browser cannot see.

    dashboard_check.py --base-url http://127.0.0.1:PORT --token OPERATOR_TOKEN --device DEVICE_ID \
        --expect-metric link.rx_bytes [--expect-metric [fleet:|device:]NAME ...] \
        [--expect-series [fleet:|device:]METRIC=LABEL ...] \
        [--expect-value [fleet:|device:]ELEMENT_ID=TEXT | ELEMENT_ID>=NUMBER ...] \
        [--screenshots DIR] [--artifacts DIR] [--json]

--expect-metric without a prefix must be charted on both pages; --expect-series and --expect-value
without a prefix must hold on every page where the chart or element is found, and be found on one.
Checks, in order:
 1. unauthenticated GET /ui/fleet and /ui/devices/ID answer 303 to /ui/login?next=PATH, and a fresh
    browser that opens /ui/fleet lands on the login page;
 2. the browser logs in through the login form and lands on /ui/fleet;
 3. the fleet page has its headline counts, the device's row and link, and a chart per expected metric
    (a path with a non-empty d, axis labels, legend text, a unit);
 4. the fleet link opens the device page, which asks for a reason and shows no chart before one is
    given; after the reason the charts, the session section and the export link are there;
 5. screenshots fleet.png and device.png at 1440x900 (with --screenshots);
 6. with urllib and the browser's session cookie: POSTs without or with a wrong CSRF token are refused
    with 403 (and change nothing the browser can see); a login done with urllib sets the session cookie
    HttpOnly, SameSite=Strict, Path=/ui, refuses a login post without the token, and answers a bad
    token with 401;
 7. the browser logs out through the logout form; /ui/fleet then goes to the login page again, and the
    old session cookie no longer works.

Each check is printed to stderr as it is made (PASS/FAIL name: detail); stdout gets one JSON object
(--json: result, checks with name, pass and detail, timings) or the line 'N passed, N failed'. Exit 0
when every check passed, 1 when one failed, 2 when the browser could not be started. Every wait has a
timeout (--timeout); --deadline bounds the whole run, the browser's shutdown included.
Needs Debian's chromium, chromium-driver and python3-selenium (setup.sh beside this file installs them);
run with Debian's /usr/bin/python3, which this script re-executes itself under when started by another.
Each device page view with a reason is audited by the collector; one passing run makes two (after the
reason form, and a reload after the refused posts): the JSON's device_views_with_reason counts them.
"""
import argparse
import html.parser
import json
import os
import re
import shutil
import signal
import ssl
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEBIAN_PYTHON = "/usr/bin/python3"
try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.remote_connection import RemoteConnection
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    # Debian's python3-selenium lives in /usr/lib/python3/dist-packages, which only Debian's own
    # interpreter reads; a pyenv or venv python3 first on PATH does not see it.
    if (os.path.exists(DEBIAN_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON)
            and not os.environ.get("MEETPUNT_BROWSER_REEXEC")):
        os.environ["MEETPUNT_BROWSER_REEXEC"] = "1"
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
    print(json.dumps({"result": "setup-error", "detail": "selenium is not importable: run scripts/browser/setup.sh"}))
    sys.exit(2)

CHROMIUM_CANDIDATES = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
CHROMEDRIVER_CANDIDATES = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
VIEWPORT = (1440, 900)


def chromium_flags(user_data_dir, insecure):
    flags = [
        "--headless=new",
        # Chromium refuses to start as root with its sandbox ("Running as root without --no-sandbox is
        # not supported"); containers without user namespaces cannot use it either. The browser only
        # ever opens the collector under test.
        "--no-sandbox",
        # Docker's default /dev/shm is 64 MiB; Chromium then crashes in shared-image allocation.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--no-proxy-server",
        # A password field otherwise makes the password manager look for a keyring over D-Bus.
        "--password-store=basic",
        "--lang=en-US",
    ]
    if insecure:
        flags.append("--ignore-certificate-errors")
    return flags


class Report:
    def __init__(self):
        self.checks = []
        self.started = time.monotonic()
        self.extra = {}

    def check(self, name, passed, detail=""):
        self.checks.append({"name": name, "pass": bool(passed), "detail": detail})
        print(f"{'PASS' if passed else 'FAIL'} {name}: {detail}", file=sys.stderr, flush=True)
        return bool(passed)

    def failed(self):
        return [c for c in self.checks if not c["pass"]]


class Deadline(BaseException):
    """Not an Exception, so that no step's handler swallows it."""



def _on_alarm(signum, frame):
    raise Deadline("the run's --deadline passed")


class Http:
    """Plain requests beside the browser: no redirects followed, no proxies, cookies passed by hand."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    def __init__(self, base_url, timeout, insecure):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        handlers = [urllib.request.ProxyHandler({}), self._NoRedirect()]
        if insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, method, path, form=None, cookies=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read().decode("utf-8", "replace")


def set_cookies(headers):
    """{name: {"value": v, "attrs": {lowercased attribute: value or True}}} from every Set-Cookie."""
    out = {}
    for line in headers.get_all("Set-Cookie") or []:
        parts = [p.strip() for p in line.split(";")]
        name, _, value = parts[0].partition("=")
        attrs = {}
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            attrs[k.strip().lower()] = v.strip() if eq else True
        out[name.strip()] = {"value": value.strip(), "attrs": attrs, "raw": line}
    return out


class FormFields(html.parser.HTMLParser):
    """The input names and values of the form with a given id."""

    def __init__(self, form_id):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif tag == "input" and self.inside and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def form_fields(page_html, form_id):
    p = FormFields(form_id)
    p.feed(page_html)
    return p.fields


def has_id(page_html, element_id):
    return re.search(r"""\bid\s*=\s*["']?%s(?=["'\s>])""" % re.escape(element_id), page_html) is not None


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


def split_page(spec):
    """'fleet:x' -> ('fleet', 'x'); 'x' -> (None, 'x')."""
    m = re.match(r"^(fleet|device):(.*)$", spec)
    return (m.group(1), m.group(2)) if m else (None, spec)


def parse_expectations(args):
    metrics = {"fleet": [], "device": []}
    for spec in args.expect_metric:
        page, name = split_page(spec)
        for p in ([page] if page else ["fleet", "device"]):
            metrics[p].append(name)
    series = []
    for spec in args.expect_series:
        page, rest = split_page(spec)
        metric, sep, label = rest.partition("=")
        if not sep or not metric or not label:
            raise SystemExit(f"--expect-series {spec!r}: expected [fleet:|device:]METRIC=LABEL")
        series.append((page, metric, label))
    values = []
    for spec in args.expect_value:
        page, rest = split_page(spec)
        m = re.match(r"^([A-Za-z][\w.-]*)(>=|=)(.*)$", rest)
        if not m:
            raise SystemExit(f"--expect-value {spec!r}: expected [fleet:|device:]ID=TEXT or ID>=NUMBER")
        values.append((page, m.group(1), m.group(2), m.group(3).strip()))
    return metrics, series, values


# Everything read from the rendered page in one round trip: what is asserted on is what Chromium laid out.
INSPECT_JS = r"""
const text = el => (el ? el.textContent.replace(/\s+/g, ' ').trim() : null);
const charts = {};
for (const svg of document.querySelectorAll('svg.chart')) {
  const name = svg.getAttribute('data-metric');
  if (name === null || charts[name]) continue;
  const r = svg.getBoundingClientRect();
  charts[name] = {
    width: r.width, height: r.height,
    series: [...svg.querySelectorAll('g.series')].map(g => ({
      label: g.getAttribute('data-series'),
      paths: [...g.querySelectorAll('path')].map(p => {
        const d = (p.getAttribute('d') || '').trim();
        let length = 0;
        try { length = p.getTotalLength(); } catch (e) {}
        return {d_chars: d.length, pairs: Math.floor((d.match(/-?\d*\.?\d+(?:e[-+]?\d+)?/gi) || []).length / 2), length: length};
      }),
    })),
    axis_labels: [...svg.querySelectorAll('text.axis-label')].map(text).filter(Boolean),
    legend: [...svg.querySelectorAll('g.legend text')].map(text).filter(Boolean),
    units: [...svg.querySelectorAll('text.unit')].map(text).filter(Boolean),
  };
}
const ids = {};
for (const id of arguments[0]) ids[id] = text(document.getElementById(id));
return {path: location.pathname, search: location.search, h1: text(document.querySelector('h1')),
        charts: charts, ids: ids, chart_count: document.querySelectorAll('svg.chart').length};
"""


class DashboardCheck:
    def __init__(self, args, report):
        self.args, self.r = args, report
        self.base = args.base_url.rstrip("/")
        self.http = Http(self.base, args.timeout, args.insecure)
        self.metrics, self.series, self.values = parse_expectations(args)
        self.device_path = "/ui/devices/" + urllib.parse.quote(args.device, safe="")  # as requested
        self.device_page = "/ui/devices/" + args.device  # as compared, decoded
        self.driver = None
        self.profile = None
        self.pages = {}  # "fleet"/"device" -> inspection result
        self.device_views = 0
        self.session_had_start_form = False

    # ---- browser plumbing

    def start_browser(self):
        chromium = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None)
        driver_bin = next((p for p in CHROMEDRIVER_CANDIDATES if os.access(p, os.X_OK)), None)
        if not chromium or not driver_bin:
            raise RuntimeError("chromium or chromedriver not found: run scripts/browser/setup.sh")
        self.profile = tempfile.mkdtemp(prefix="meetpunt-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in chromium_flags(self.profile, self.args.insecure):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.ignore_local_proxy_environment_variables()
        log = os.path.join(self.args.artifacts, "chromedriver.log") if self.args.artifacts else os.devnull
        RemoteConnection.set_timeout(self.args.timeout * 2)  # no WebDriver command may hang the run
        self.driver = webdriver.Chrome(service=Service(executable_path=driver_bin, log_path=log), options=options)
        self.driver.set_page_load_timeout(self.args.timeout * 2)
        self.driver.set_script_timeout(self.args.timeout)
        # The window size flag sets the window; this pins the layout viewport and the screenshot to it.
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
        self.r.extra["browser"] = f"{self.driver.capabilities.get('browserName')} {self.driver.capabilities.get('browserVersion')}"

    def stop_browser(self):
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception as e:  # the run's result is already decided; say why cleanup failed
                print(f"warning: quitting the browser failed: {e}", file=sys.stderr)
            self.driver = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    def wait(self, what, condition, timeout=None):
        try:
            return WebDriverWait(self.driver, timeout or self.args.timeout, poll_frequency=0.1).until(
                lambda d: condition(d))
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout or self.args.timeout} s waiting for {what} "
                                 f"(at {self.driver.current_url})") from None

    def path(self):
        """The current path, percent-decoded: a device id may be written either way in a link."""
        return urllib.parse.unquote(urllib.parse.urlsplit(self.driver.current_url).path)

    def query(self):
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.driver.current_url).query))

    def find(self, css):
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else None

    def submit(self, form):
        """Submits like a person: the form's submit button when it has one, else requestSubmit()."""
        buttons = form.find_elements(By.CSS_SELECTOR, "button:not([type]), button[type=submit], input[type=submit]")
        if buttons:
            buttons[0].click()
        else:
            self.driver.execute_script("arguments[0].requestSubmit()", form)

    def inspect(self, ids):
        return self.driver.execute_script(INSPECT_JS, list(ids))

    def save_failure(self, step):
        if not (self.args.artifacts and self.driver):
            return ""
        try:
            base = os.path.join(self.args.artifacts, f"failure-{step}")
            self.driver.save_screenshot(base + ".png")
            with open(base + ".html", "w") as f:
                f.write(self.driver.page_source)
            return f" (page saved as {base}.png/.html)"
        except WebDriverException:
            return ""

    def console_errors(self):
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            return []
        return [e.get("message", "") for e in entries
                if e.get("level") == "SEVERE" and "favicon.ico" not in e.get("message", "")]

    # ---- steps

    def step1_unauthenticated(self):
        for path in ("/ui/fleet", self.device_path):
            status, headers, _ = self.http.request("GET", path)
            loc = headers.get("Location", "")
            target = urllib.parse.urlsplit(loc)
            nxt = dict(urllib.parse.parse_qsl(target.query)).get("next")
            self.r.check(f"unauthenticated GET {path} is sent to the login page",
                         status == 303 and target.path == "/ui/login" and nxt == path,
                         f"status {status}, Location {loc!r}")
        self.driver.get(self.base + "/ui/fleet")  # returns once the page after the redirects has loaded
        landed = self.path() == "/ui/login" and self.query().get("next") == "/ui/fleet"
        form = self.find("form#login")
        self.r.check("a fresh browser opening /ui/fleet lands on the login page", landed and form is not None,
                     f"at {self.driver.current_url}" + ("" if form else ", no form#login"))
        if form is None:
            return True  # reported; step 2 opens the login page itself
        shape = {
            "method post": (form.get_attribute("method") or "").lower() == "post",
            "action /ui/login": urllib.parse.urlsplit(form.get_attribute("action") or "").path == "/ui/login",
            "password token": bool(self.find("form#login input[name=token][type=password]")),
            "csrf": bool(self.find("form#login input[type=hidden][name=csrf]")) and bool(
                self.find("form#login input[name=csrf]").get_attribute("value")),
            "next": self.driver.execute_script(
                "const n = document.querySelector('form#login input[type=hidden][name=next]'); return n && n.value") == "/ui/fleet",
            "submit": bool(self.find("form#login #login-submit")),
        }
        self.r.check("the login form has a password token, a CSRF token, next and a submit button",
                     all(shape.values()), ", ".join(k for k, ok in shape.items() if not ok) or "as in the contract")
        return shape["password token"] and shape["submit"]

    def step2_login(self):
        if self.find("form#login") is None:
            self.driver.get(self.base + "/ui/login?next=%2Fui%2Ffleet")
        token = self.find("form#login input[name=token]")
        if token is None or self.find("#login-submit") is None:
            raise AssertionError(f"no token field or #login-submit at {self.driver.current_url}")
        token.clear()
        token.send_keys(self.args.token)
        self.find("#login-submit").click()
        self.wait("the fleet page after logging in",
                  lambda d: self.path() == "/ui/fleet" or self.find("#login-error") or self.find("#csrf-error"))
        refusal = self.find("#login-error") or self.find("#csrf-error")
        if refusal is not None:
            raise AssertionError(f"the login was refused: {refusal.text.strip()[:200]!r}")
        cookie = self.driver.get_cookie("meetpunt_session")
        self.r.check("logging in through the form lands on /ui/fleet with a session cookie",
                     cookie is not None and self.path() == "/ui/fleet",
                     f"at {self.driver.current_url}; cookie " + (
                         f"httpOnly={cookie.get('httpOnly')} sameSite={cookie.get('sameSite')} path={cookie.get('path')}"
                         if cookie else "missing"))
        return cookie is not None

    def check_charts(self, page, info):
        for metric in self.metrics[page]:
            c = info["charts"].get(metric)
            if c is None:
                self.r.check(f"{page}: chart {metric}", False,
                             f"no svg.chart[data-metric={metric!r}]; charted: {sorted(info['charts'])}")
                continue
            paths = [p for s in c["series"] for p in s["paths"]]
            drawn = [p for p in paths if p["d_chars"] > 0]
            missing = []
            if not drawn:
                missing.append("a series path with a non-empty d")
            if drawn and max(p["pairs"] for p in drawn) < self.args.min_points:
                missing.append(f"a path of {self.args.min_points} points or more")
            if not c["axis_labels"]:
                missing.append("axis labels")
            if not c["legend"]:
                missing.append("legend text")
            if not c["units"]:
                missing.append("a unit")
            if c["width"] <= 0 or c["height"] <= 0:
                missing.append("a laid-out size")
            summary = (f"series {[s['label'] for s in c['series']]}, points per path {[p['pairs'] for p in paths]}, "
                       f"unit {c['units']}, axis labels {c['axis_labels'][:6]}, legend {c['legend'][:6]}, "
                       f"{c['width']:.0f}x{c['height']:.0f} px")
            self.r.check(f"{page}: chart {metric}", not missing,
                         ("missing " + ", ".join(missing) + "; " if missing else "") + summary)

    def check_series_and_values(self):
        for page, metric, label in self.series:
            pages = [page] if page else [p for p in ("fleet", "device") if metric in self.pages.get(p, {}).get("charts", {})]
            results = []
            for p in pages:
                chart = self.pages.get(p, {}).get("charts", {}).get(metric)
                labels = [s["label"] for s in chart["series"]] if chart else []
                results.append((p, label in labels, labels))
            self.r.check(f"series {label!r} in chart {metric}", bool(results) and all(ok for _, ok, _ in results),
                         "; ".join(f"{p}: {labels}" for p, _, labels in results) or "no page charts it")
        for page, element_id, op, want in self.values:
            pages = [page] if page else [p for p in ("fleet", "device") if self.pages.get(p, {}).get("ids", {}).get(element_id) is not None]
            results = []
            for p in pages:
                got = self.pages.get(p, {}).get("ids", {}).get(element_id)
                if op == "=":
                    ok = got == want
                else:
                    try:
                        ok = float(got.replace(",", "")) >= float(want)
                    except (AttributeError, ValueError):
                        ok = False
                results.append((p, ok, got))
            self.r.check(f"#{element_id} {op} {want}", bool(results) and all(ok for _, ok, _ in results),
                         "; ".join(f"{p}: {got!r}" for p, _, got in results) or "no page has that element")

    def screenshot(self, name):
        if not self.args.screenshots:
            return
        os.makedirs(self.args.screenshots, exist_ok=True)
        data = self.driver.get_screenshot_as_png()
        size = png_size(data)
        dest = os.path.join(self.args.screenshots, name)
        with open(dest + ".partial", "wb") as f:
            f.write(data)
        os.replace(dest + ".partial", dest)
        self.r.check(f"screenshot {name} at {VIEWPORT[0]}x{VIEWPORT[1]}", size == VIEWPORT,
                     f"{dest}: {size[0]}x{size[1]}, {len(data)} bytes" if size else f"{dest}: not a PNG")
        self.r.extra.setdefault("screenshots", []).append(dest)

    def step3_fleet(self):
        self.wait("the fleet page's <h1>", lambda d: self.find("h1"))
        watch = [v[1] for v in self.values if v[0] in (None, "fleet")]
        info = self.inspect(["devices-reporting", "devices-stale", "reports-stored", *watch])
        self.pages["fleet"] = info
        self.r.check("fleet: <h1>Fleet</h1>", info["h1"] == "Fleet", f"h1 {info['h1']!r}")
        counts = {k: info["ids"][k] for k in ("devices-reporting", "devices-stale", "reports-stored")}
        self.r.check("fleet: devices reporting, stale and reports stored are numbers",
                     all(v is not None and re.fullmatch(r"\d[\d,]*", v) for v in counts.values()), json.dumps(counts))
        sections = {s: bool(self.find(s)) for s in ("table#worst-wifi", "section#ingest-health",
                                                    "section#ingest-health #reports-stored", "section#agent-drops",
                                                    "form#logout input[type=hidden][name=csrf]")}
        self.r.check("fleet: worst Wi-Fi, ingest health, agent drops and the logout form are there",
                     all(sections.values()), ", ".join(f"{k} missing" for k, ok in sections.items() if not ok) or "all present")
        row = self.driver.execute_script(
            "return [...document.querySelectorAll('table#devices tr[data-device]')]"
            ".find(r => r.getAttribute('data-device') === arguments[0]) || null", self.args.device)
        link = None
        if row is not None:
            links = [a for a in row.find_elements(By.CSS_SELECTOR, "a[href]")
                     if urllib.parse.unquote(urllib.parse.urlsplit(a.get_attribute("href")).path) == self.device_page]
            link = links[0] if links else None
        self.r.check(f"fleet: table#devices has the row of {self.args.device} with a link to its page",
                     link is not None, "row missing" if row is None else ("link missing" if link is None else self.device_path))
        self.check_charts("fleet", info)
        self.screenshot("fleet.png")
        return link

    def step4_device(self, link):
        link.click()
        self.wait("the device page", lambda d: self.path() == self.device_page)
        self.wait("the reason form", lambda d: self.find("form#reason-form"))
        form = self.find("form#reason-form")
        before = self.inspect([])
        self.r.check("device: a reason is asked for before any data is shown",
                     (form.get_attribute("method") or "get").lower() == "get" and self.find("form#reason-form input[name=reason]")
                     and before["chart_count"] == 0,
                     f"{before['chart_count']} charts before a reason")
        field = self.find("form#reason-form input[name=reason]")
        field.send_keys(self.args.reason)
        self.submit(form)
        self.wait("the device page with a reason", lambda d: self.query().get("reason") == self.args.reason
                  and self.find("h1") is not None and self.find("form#reason-form") is None)
        self.device_views += 1
        self.wait("the device's charts", lambda d: self.find("svg.chart"))
        watch = [v[1] for v in self.values if v[0] in (None, "device")]
        info = self.inspect(watch)
        self.pages["device"] = info
        self.r.check("device: <h1> names the device", self.args.device in (info["h1"] or ""), f"h1 {info['h1']!r}")
        self.check_charts("device", info)
        session = self.find("section#session")
        start = self.find("section#session form#session-start")
        if start is not None:
            ok = (urllib.parse.unquote(urllib.parse.urlsplit(start.get_attribute("action")).path) == self.device_page + "/sessions"
                  and (start.get_attribute("method") or "").lower() == "post"
                  and bool(self.find("form#session-start input[type=hidden][name=csrf]"))
                  and bool(self.find("form#session-start [name=reason]"))
                  and bool(self.find("form#session-start [name=minutes]")))
            detail = "start form with csrf, reason and minutes" if ok else "start form not as in the contract"
        else:
            ok = session is not None and bool(session.text.strip())
            detail = f"current session: {session.text.strip()[:120]!r}" if session else "section#session missing"
        self.r.check("device: section#session shows the session or its start form", ok, detail)
        self.session_had_start_form = start is not None
        export = self.find("a#export-link")
        self.r.check("device: a#export-link", export is not None and bool(export.get_attribute("href")),
                     export.get_attribute("href") if export else "missing")
        self.screenshot("device.png")

    def step6_http_csrf(self, browser_cookie):
        session = {"meetpunt_session": browser_cookie}
        post = self.device_path + "/sessions"
        for name, form in (("without a CSRF token", {"reason": "csrf check", "minutes": "5"}),
                           ("with a wrong CSRF token", {"reason": "csrf check", "minutes": "5", "csrf": "not-the-token"})):
            status, _, body = self.http.request("POST", post, form, session)
            self.r.check(f"POST {post} {name} is refused with 403", status == 403 and has_id(body, "csrf-error"),
                         f"status {status}" + ("" if has_id(body, "csrf-error") else ", no #csrf-error"))
        if "device" in self.pages:
            # The refused posts must have changed nothing: the session is alive, no troubleshooting session began.
            self.driver.refresh()  # returns once the page has loaded
            self.device_views += 1
            still = (self.path() == self.device_page
                     and (self.find("section#session form#session-start") is not None) == self.session_had_start_form)
            self.r.check("the refused posts changed nothing the device page shows", still,
                         f"at {self.driver.current_url}; start form "
                         f"{'there' if self.find('form#session-start') else 'not there'}, before: "
                         f"{'there' if self.session_had_start_form else 'not there'}")
        status, _, body = self.http.request("POST", "/ui/logout", {}, session)
        self.r.check("POST /ui/logout without a CSRF token is refused with 403", status == 403 and has_id(body, "csrf-error"),
                     f"status {status}")

    def step6_http_login(self):
        """A login of its own, to read the Set-Cookie header the browser hides."""
        status, headers, body = self.http.request("GET", "/ui/login?next=%2Fui%2Ffleet")
        pre = set_cookies(headers).get("meetpunt_csrf")
        fields = form_fields(body, "login")
        self.r.check("GET /ui/login sets the pre-session cookie meetpunt_csrf and the form's csrf",
                     status == 200 and pre is not None and bool(fields.get("csrf")),
                     f"status {status}, cookie {pre['raw'] if pre else 'missing'}")
        if pre is None:
            return
        jar = {"meetpunt_csrf": pre["value"]}
        status, _, body = self.http.request("POST", "/ui/login", {"token": self.args.token, "next": "/ui/fleet"}, jar)
        self.r.check("POST /ui/login without a CSRF token is refused with 403",
                     status == 403 and has_id(body, "csrf-error"), f"status {status}")
        status, _, body = self.http.request("POST", "/ui/login",
                                            {"token": self.args.token + "-wrong", "csrf": fields.get("csrf", ""), "next": "/ui/fleet"}, jar)
        self.r.check("POST /ui/login with a wrong token answers 401 with #login-error",
                     status == 401 and has_id(body, "login-error"), f"status {status}")
        status, headers, _ = self.http.request("POST", "/ui/login",
                                               {"token": self.args.token, "csrf": fields.get("csrf", ""), "next": "/ui/fleet"}, jar)
        cookie = set_cookies(headers).get("meetpunt_session")
        attrs = cookie["attrs"] if cookie else {}
        problems = []
        if status != 303 or urllib.parse.urlsplit(headers.get("Location", "")).path != "/ui/fleet":
            problems.append(f"status {status} to {headers.get('Location')!r}")
        if cookie is None:
            problems.append("no meetpunt_session cookie")
        else:
            if "httponly" not in attrs:
                problems.append("not HttpOnly")
            if str(attrs.get("samesite", "")).lower() != "strict":
                problems.append(f"SameSite={attrs['samesite']}" if "samesite" in attrs else "no SameSite")
            if attrs.get("path") != "/ui":
                problems.append(f"Path={attrs['path']}" if "path" in attrs else "no Path")
        self.r.check("a login sets meetpunt_session HttpOnly, SameSite=Strict, Path=/ui and answers 303 to next",
                     not problems, "; ".join(problems) or cookie["raw"].replace(cookie["value"], "…"))
        if cookie:  # log that session out again, so a run leaves one session behind at most
            mine = {"meetpunt_session": cookie["value"]}
            _, _, page = self.http.request("GET", "/ui/fleet", cookies=mine)
            csrf = form_fields(page, "logout").get("csrf")
            if csrf:
                self.http.request("POST", "/ui/logout", {"csrf": csrf}, mine)

    def step7_logout(self, browser_cookie):
        form = self.find("form#logout")
        if form is None:
            self.r.check("logging out through the logout form", False, f"no form#logout at {self.driver.current_url}")
            return
        before = self.driver.current_url
        self.submit(form)
        self.wait("the page after logging out", lambda d: d.current_url != before)
        self.driver.get(self.base + "/ui/fleet")  # returns once the page after the redirects has loaded
        self.r.check("after logging out, /ui/fleet goes to the login page", self.path() == "/ui/login",
                     f"at {self.driver.current_url}")
        status, headers, _ = self.http.request("GET", "/ui/fleet", cookies={"meetpunt_session": browser_cookie})
        self.r.check("after logging out, the old session cookie no longer works",
                     status == 303 and urllib.parse.urlsplit(headers.get("Location", "")).path == "/ui/login",
                     f"status {status}, Location {headers.get('Location')!r}")

    def run(self):
        def step(name, fn, *a):
            t0 = time.monotonic()
            try:
                return fn(*a)
            except Exception as e:  # any failure of a step is a failed check, reported with the rest
                text = (getattr(e, "msg", None) or str(e)).strip()
                msg = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
                self.r.check(f"step {name}", False, msg + self.save_failure(name))
                return None
            finally:
                self.r.extra.setdefault("step_seconds", {})[name] = round(time.monotonic() - t0, 2)

        step("unauthenticated", self.step1_unauthenticated)
        if not step("login", self.step2_login):
            step("http-login", self.step6_http_login)
            return
        link = step("fleet", self.step3_fleet)
        cookie = step("session-cookie", lambda: (self.driver.get_cookie("meetpunt_session") or {}).get("value"))
        if link is not None:
            step("device", self.step4_device, link)
        else:
            self.r.check("device: page opened from the fleet page", False, "not opened: the fleet page has no link to it")
        if cookie:
            step("http-csrf", self.step6_http_csrf, cookie)
        step("http-login", self.step6_http_login)
        self.check_series_and_values()
        errors = self.console_errors()
        self.r.check("no errors in the browser console", not errors, "; ".join(errors[:5]) or "none")
        if cookie:
            step("logout", self.step7_logout, cookie)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="the collector, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="an operator API token")
    ap.add_argument("--device", required=True, help="a device id the collector holds reports of")
    ap.add_argument("--expect-metric", action="append", default=[], metavar="[PAGE:]NAME")
    ap.add_argument("--expect-series", action="append", default=[], metavar="[PAGE:]METRIC=LABEL")
    ap.add_argument("--expect-value", action="append", default=[], metavar="[PAGE:]ID=TEXT|ID>=NUMBER")
    ap.add_argument("--min-points", type=int, default=1, help="points the longest path of a chart must have (default 1)")
    ap.add_argument("--reason", default="acceptance test of the dashboard", help="reason typed into the device page")
    ap.add_argument("--screenshots", metavar="DIR", help="write fleet.png and device.png here")
    ap.add_argument("--artifacts", metavar="DIR", help="write chromedriver.log and failure-STEP.png/.html here")
    ap.add_argument("--timeout", type=float, default=15, help="seconds any one wait or request may take (default 15)")
    ap.add_argument("--deadline", type=int, default=180, help="seconds the whole run may take (default 180)")
    ap.add_argument("--insecure", action="store_true", help="accept the collector's self-signed certificate")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args()
    if not args.expect_metric:
        ap.error("name at least one --expect-metric")
    if args.artifacts:
        os.makedirs(args.artifacts, exist_ok=True)

    report = Report()
    check = DashboardCheck(args, report)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.deadline)
    setup_error = None
    try:
        try:
            check.start_browser()
        except (WebDriverException, RuntimeError, OSError) as e:
            setup_error = f"the browser did not start: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        else:
            check.run()
    except Deadline as e:
        report.check("the run finished within --deadline", False, f"{e} ({args.deadline} s)")
    finally:
        signal.alarm(int(args.timeout * 2) + 5)  # bound the browser's shutdown too
        try:
            check.stop_browser()
        except Deadline:
            print("warning: the browser did not quit in time", file=sys.stderr)
        signal.alarm(0)

    failed = report.failed()
    result = "setup-error" if setup_error else ("pass" if not failed else "fail")
    out = {"result": result, "duration_seconds": round(time.monotonic() - report.started, 2),
           "passed": len(report.checks) - len(failed), "failed": len(failed),
           "device_views_with_reason": check.device_views,
           **report.extra, "checks": report.checks}
    if setup_error:
        out["detail"] = setup_error
    if args.json:
        print(json.dumps(out, indent=2))
    else:  # each check was printed to stderr as it was made
        print(setup_error or f"{out['passed']} passed, {out['failed']} failed ({out['duration_seconds']} s)")
    sys.exit(2 if setup_error else (1 if failed else 0))


if __name__ == "__main__":
    main()
