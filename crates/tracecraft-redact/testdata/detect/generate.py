#!/usr/bin/env python3
"""Writes corpus.jsonl: a labelled, deterministic detection corpus (standard library only).

Each line: {"kind": "positive"|"negative", "rule", "form", "group", "text", "secret"}.
`group` is plain, encoded, wrapped or structural (the issue's recall targets differ).
Secrets are generated from public format descriptions (vendor token prefixes and lengths,
gitleaks-style shapes, ITU-T E.164 numbering), never copied from real data.
Run: python3 generate.py  (same bytes every time).
"""
import base64, json, random, string, urllib.parse

R = random.Random(13)
A = string.ascii_letters + string.digits
def rs(n, chars=A): return "".join(R.choice(chars) for _ in range(n))
def luhn_complete(prefix, n):
    d = [int(c) for c in prefix] + [R.randrange(10) for _ in range(n - len(prefix) - 1)]
    s = 0
    for i, x in enumerate(reversed(d)):
        x = x * 2 if i % 2 == 0 else x
        s += x - 9 if x > 9 else x
    return "".join(map(str, d)) + str((10 - s % 10) % 10)

def jwt():
    h = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    p = base64.urlsafe_b64encode(('{"sub":"%d","name":"%s"}' % (R.randrange(10**6), rs(6, string.ascii_lowercase))).encode()).decode().rstrip("=")
    return "%s.%s.%s" % (h, p, rs(43, A + "-_"))

SECRETS = {
    "openai_api_key": lambda: "sk-proj-" + rs(48, A + "-_"),
    "anthropic_api_key": lambda: "sk-ant-api03-" + rs(93, A + "-_") + "AA",
    "aws_access_key": lambda: "AKIA" + rs(16, string.ascii_uppercase + string.digits),
    "github_token": lambda: "ghp_" + rs(36),
    "google_api_key": lambda: "AIza" + rs(35, A + "-_"),
    "slack_token": lambda: "xoxb-" + "%d-%d-%s" % (R.randrange(10**11, 10**12), R.randrange(10**11, 10**12), rs(24)),
    "stripe_key": lambda: "sk_live_" + rs(24),
    "bearer_token": jwt,
    "email": lambda: R.choice(["%s.%s@%s.example.com", "%s+%s@mail.%s.co.uk", "%s_%s@%s.org"]) % (rs(5, string.ascii_lowercase), rs(4, string.ascii_lowercase), rs(6, string.ascii_lowercase)),
    "credit_card": lambda: R.choice([lambda: luhn_complete("4", 16), lambda: luhn_complete("51", 16), lambda: luhn_complete("37", 15)])(),
    "ssn": lambda: "%03d-%02d-%04d" % (R.randrange(1, 665), R.randrange(1, 99), R.randrange(1, 9999)),
    "phone": lambda: R.choice(["+44 7700 9%05d", "+49 30 %07d", "+33 6 %02d %02d %02d %02d", "+91 9%04d %05d", "+81 3-%04d-%04d", "+1 415-555-%04d"]).count("%") and (lambda f: f % tuple(R.randrange(10 ** (2 if "%02d" in f else 4)) for _ in range(f.count("%"))))(R.choice(["+44 7700 9%05d", "+49 30 %07d", "+33 6 %02d %02d %02d %02d", "+91 9%04d %05d", "+81 3-%04d-%04d", "+1 415-555-%04d"])),
    "password_field": lambda: rs(6, string.ascii_lowercase) + rs(3, string.digits) + R.choice("!#%"),
}

PLAIN = [
    ("prose", "Sure, I used {s} for that request and it worked."),
    ("json", '{{"tool": "fetch", "args": {{"value": "{s}"}}}}'),
    ("log", "2025-03-14T10:00:00Z INFO worker[7] got {s} from cache"),
    ("csv_cell", "id,value,note\n7,{s},ok\n"),
    ("tool_args", "call_tool(name='lookup', arg=\"{s}\")"),
]
KEYED = {"password_field": ["password={s}", '"password": "{s}"', "DB_PASSWORD={s}", "passwd: '{s}'"],
         "email": ["mail {s} now"], "phone": ["call {s} now", "tel: {s}"], "ssn": ["SSN {s} on file"],
         "credit_card": ["card {s} charged"]}
BASE64_OK = {"openai_api_key", "anthropic_api_key", "github_token", "google_api_key", "slack_token", "stripe_key", "email", "aws_access_key", "bearer_token"}

out = []
def pos(rule, form, group, text, secret): out.append({"kind": "positive", "rule": rule, "form": form, "group": group, "text": text, "secret": secret})
def neg(form, text): out.append({"kind": "negative", "rule": "-", "form": form, "group": "negative", "text": text, "secret": ""})

for rule, gen in SECRETS.items():
    for _ in range(40):
        s = gen()
        if rule in KEYED:
            pos(rule, "keyed", "plain", R.choice(KEYED[rule]).format(s=s), s)
            if rule == "password_field":
                continue
        form, tpl = R.choice(PLAIN)
        pos(rule, form, "plain", tpl.format(s=s), s)
    for _ in range(20):
        s = gen()
        if rule == "password_field":
            s_enc = "password=" + s
        elif rule in ("phone", "ssn", "credit_card"):
            s_enc = {"phone": "tel ", "ssn": "ssn ", "credit_card": "card "}[rule] + s
        else:
            s_enc = s
        if rule in BASE64_OK or rule == "password_field":
            b = base64.b64encode(s_enc.encode()).decode()
            pos(rule, "base64", "encoded", "secret blob: " + b + " end", b)
        q = urllib.parse.quote("q=" + s_enc, safe="")
        pos(rule, "percent", "encoded", "GET /search?" + q + "&page=2", s)
        esc = json.dumps({"v": s_enc}).replace("/", "\\/").replace("@", "\\u0040")
        pos(rule, "json_escape", "encoded", json.dumps({"payload": esc}), s)
        if len(s) >= 30 and rule not in ("email", "phone", "ssn", "credit_card", "password_field"):
            cut = 16 + R.randrange(len(s) - 20)
            pos(rule, "wrapped_raw", "wrapped", "token " + s[:cut] + "\n" + s[cut:] + " end", s)
            pos(rule, "wrapped_escaped", "wrapped", '{"k": "' + s[:cut] + "\\n" + s[cut:] + '"}', s)

for _ in range(30):
    pw = SECRETS["password_field"]()
    pos("password_field", "csv_header", "structural", "user,password,role\nbob,%s,admin\n" % pw, pw)
    pos("password_field", "tsv_header", "structural", "name\taws_secret_access_key\n%s\t%s\n" % (rs(4, string.ascii_lowercase), pw), pw)
    pos("password_field", "yaml", "structural", "db:\n  host: x\n  smtp_password: %s\n" % pw, pw)
    pos("password_field", "env", "structural", "APP_SECRET=%s\nPORT=8080\n" % pw, pw)
    pos("password_field", "form_body", "structural", "grant_type=password&username=bob&password=%s" % pw, pw)
    pos("password_field", "natural_language", "structural", R.choice(["my password is %s", "the passcode is %s", "Password was %s, please rotate"]) % pw, pw)
    pos("password_field", "camel_key", "structural", '{"clientSecret": "%s"}' % pw, pw)
    pin = "%04d" % R.randrange(1000, 9999)
    pos("password_field", "pin", "structural", "the PIN is %s" % pin, pin)
    j = jwt()
    pos("bearer_token", "bare_jwt", "plain", R.choice(["id_token=%s", "cookie: session=%s;", "got %s back"]) % j, j)
    n = "%d%09d" % (R.randrange(2, 10), R.randrange(10**9))
    n = n[:10]
    pos("phone", "national_context", "plain", R.choice(["WhatsApp me at %s", "mobile: %s", "Tel. %s"]) % ("0" + n[1:4] + " " + n[4:]), "0" + n[1:4] + " " + n[4:])
    ssn = "%03d%02d%04d" % (R.randrange(1, 665), R.randrange(1, 99), R.randrange(1, 9999))
    pos("ssn", "no_dashes_context", "plain", "SSN: %s" % ssn, ssn)
    e = "%s@%s.example" % (R.choice(["josé", "müller", "иван", "zoë"]), R.choice(["café", "bücher", "mail"]))
    pos("email", "international", "plain", "reach %s today" % e, e)

NEG = [
    ("invoice_10_digit", lambda: "invoice %d issued" % R.randrange(2 * 10**9, 10**10)),
    ("order_number", lambda: "order number %d shipped" % R.randrange(2 * 10**9, 10**10)),
    ("epoch", lambda: "ts=%d ok" % R.randrange(1600000000, 1800000000)),
    ("epoch_ms", lambda: "at %d ms" % R.randrange(1600000000000, 1800000000000)),
    ("uuid", lambda: "run %08x-%04x-4%03x-a%03x-%012x" % (R.getrandbits(32), R.getrandbits(16), R.getrandbits(12), R.getrandbits(12), R.getrandbits(48))),
    ("sha1", lambda: "commit %040x" % R.getrandbits(160)),
    ("sha256", lambda: "sha256 %064x" % R.getrandbits(256)),
    ("trace_id", lambda: "trace %032x span %016x" % (R.getrandbits(128), R.getrandbits(64))),
    ("version", lambda: "v%d.%d.%d-rc.%d" % tuple(R.randrange(20) for _ in range(4))),
    ("model", lambda: R.choice(["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "llama-3.1-70b"])),
    ("bool_under_secret", lambda: '{"secret": %s, "password": null}' % R.choice(["true", "false"])),
    ("token_count", lambda: "token_count: %d, max_tokens: %d" % (R.randrange(1000), R.randrange(4096))),
    ("code_names_secret", lambda: R.choice(["password = get_password()", "token: str", 'api_key = os.environ["API_KEY"]', "${{ secrets.GITHUB_TOKEN }}", "{{ .Values.password }}"])),
    ("already_redacted", lambda: R.choice(["password=[REDACTED]", "token: ***", "secret: <redacted>", "api_key=[HASH:%016x]" % R.getrandbits(64)])),
    ("vendor_object_id", lambda: R.choice(["cus_", "pi_", "ch_", "msg_"]) + rs(14)),
    ("ip_address", lambda: "%d.%d.%d.%d" % tuple(R.randrange(256) for _ in range(4))),
    ("date_time", lambda: "2025-%02d-%02dT%02d:%02d:00Z" % (R.randrange(1, 13), R.randrange(1, 29), R.randrange(24), R.randrange(60))),
    ("nine_digits_no_context", lambda: "batch %09d done" % R.randrange(10**8, 10**9)),
    ("plus_score", lambda: "score +%d points" % R.randrange(10**6)),
    ("base64_plain_text", lambda: "blob " + base64.b64encode(("note %s about the weather" % rs(8, string.ascii_lowercase)).encode()).decode()),
    ("prose_password_talk", lambda: R.choice(["the password is incorrect", "your password was reset", "password is required"])),
    ("csv_without_secrets", lambda: "user,role,count\nbob,admin,%d\n" % R.randrange(100)),
]
for form, g in NEG:
    for _ in range(40):
        neg(form, g())

with open("corpus.jsonl", "w", encoding="utf-8") as f:
    for o in out:
        f.write(json.dumps(o, ensure_ascii=False) + "\n")
print(len(out), "cases")
