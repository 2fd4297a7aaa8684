//! The 17 built-in rules: patterns, anchors and validators.
//!
//! Every built-in rule is one of two kinds, which is what lets the engine run one prefilter
//! pass for all rules and verify only around candidates (see `engine.rs`):
//! - **start-anchored**: every match begins exactly where one of the rule's anchor literals
//!   (ASCII case-insensitively, or exactly for rules marked `exact`) begins; the engine runs
//!   one anchored search per anchor.
//! - **windowed**: every match contains an anchor (a literal, or a cluster of at least 9 ASCII
//!   digits) and lies within `back`/`fwd` bytes of it; the engine searches merged windows.
//!
//! A unit test checks each windowed rule's maximum match length against its window.

/// Built-in sensitive keys (compared after lower-casing and dropping `-` and `_`).
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
    "authorization",
    "cookie",
    "set-cookie",
    "private_key",
    "passphrase",
    "passcode",
    "pin",
    "secret_key",
    "access_key",
    "secret_access_key",
];

/// Post-match check: `(text, match_start, match_end, redacted spans) -> keep?`.
pub(crate) type Validator = fn(&str, usize, usize, &[(usize, usize)]) -> bool;

/// Pre-search check of one anchor occurrence: `(text, anchor_start, anchor_end) -> may a match
/// of the rule contain it?` (start-anchored rules: begin at it). `false` must mean that no
/// match can; the engine then does not search there.
pub(crate) type Viable = fn(&[u8], usize, usize) -> bool;

/// A run that every match of a start-anchored rule contains: every match that begins at `s`
/// contains `len` consecutive bytes of `class` beginning in `s + min..=s + max`. The engine
/// looks for such runs with one forward cursor per rule and text (linear in all), and does
/// not search at an anchor with none in reach, so a dense run of anchors with no value
/// anywhere near costs no regex search.
#[derive(Clone, Copy)]
pub(crate) struct Need {
    pub(crate) class: fn(u8) -> bool,
    pub(crate) len: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Matches start at an anchor.
    Start,
    /// Matches lie in `[anchor.start - back, anchor.end + fwd]`.
    Window { back: usize, fwd: usize },
    /// Matches contain >= 9 ASCII digits within 32 bytes, digits separated by at most 3
    /// bytes of `-. ()` / NBSP, and extend at most 8 bytes beyond the outer digits.
    /// (`phone` also has fullwidth-digit anchors, windowed by 64 bytes.)
    Digits(Shapes),
}

/// What the ASCII matches of a [`Kind::Digits`] rule look like as maximal runs of ASCII
/// digits: each is one of `runs`, consecutive runs of one digit cluster (its separators are
/// single characters, and it begins and ends at a word boundary or a `+`/`(`/`)`, so its runs
/// are whole runs). Unless one of the bytes `unless` is in reach (a `+` or `(` of a phone
/// number, whose forms are many); then the whole cluster window is searched. Lets the engine
/// search long clusters (`555-123-4567-555-...`) only around runs that can match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shapes {
    pub(crate) runs: &'static [&'static [Run]],
    pub(crate) unless: &'static [u8],
    /// Every cluster window is searched whole (matches of any shape).
    pub(crate) whole: bool,
}

/// One run of a [`Shapes`]: its length range and the digits it may begin with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// The lowest first digit.
    pub(crate) first: u8,
}

/// A run of exactly `n` digits, the first at least `first`.
const fn run(n: usize, first: u8) -> Run {
    Run {
        min: n,
        max: n,
        first,
    }
}

/// `phone`: `NPA-NXX-XXXX` (area and exchange 2-9); forms with `+` or `(` are searched
/// whole. (Bare `NPANXXXXXX` is a phone only near a phone word: the `phone` context detector.)
const PHONE: Shapes = Shapes {
    runs: &[&[run(3, b'2'), run(3, b'2'), run(4, b'0')]],
    unless: b"+(",
    whole: false,
};

/// `credit_card`: 4-4-4-4, Amex 4-6-5 (beginning with 3), 13-19 digits.
const CARD: Shapes = Shapes {
    runs: &[
        &[run(4, b'0'), run(4, b'0'), run(4, b'0'), run(4, b'0')],
        &[run(4, b'3'), run(6, b'0'), run(5, b'0')],
        &[Run {
            min: 13,
            max: 19,
            first: b'0',
        }],
    ],
    unless: b"",
    whole: false,
};

/// `ssn`: 3-2-4.
const SSN: Shapes = Shapes {
    runs: &[&[run(3, b'0'), run(2, b'0'), run(4, b'0')]],
    unless: b"",
    whole: false,
};

/// `ssn` after an SSN word: 9, 3-2-4, 5-4, 3-6.
const SSN_BARE: Shapes = Shapes {
    runs: &[
        &[run(9, b'0')],
        &[run(3, b'0'), run(2, b'0'), run(4, b'0')],
        &[run(5, b'0'), run(4, b'0')],
        &[run(3, b'0'), run(6, b'0')],
    ],
    unless: b"",
    whole: false,
};

/// Any digit groups (national phone formats after a phone word): searched whole.
const ANY_DIGITS: Shapes = Shapes {
    runs: &[],
    unless: b"",
    whole: true,
};

pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) pattern: &'static str,
    pub(crate) kind: Kind,
    pub(crate) anchors: &'static [&'static str],
    /// The anchors are matched case-sensitively (the pattern matches them so); otherwise
    /// ASCII case-insensitively.
    pub(crate) exact: bool,
    pub(crate) validator: Option<Validator>,
    /// See [`Viable`].
    pub(crate) viable: Option<Viable>,
    /// See [`Need`].
    pub(crate) need: Option<Need>,
}

/// Separator between a key and its value: optional closing quote (maybe JSON-escaped),
/// `=`, `:`, `:=` or `=>`, spaces.
macro_rules! sep {
    () => {
        r#"\\{0,2}["']?[ \t]*(?:=>|:=|[=:])[ \t]*"#
    };
}

/// A password-like value: double-quoted, single-quoted (spaces allowed) or bare (ends at
/// whitespace, a quote, `,;)}]>`; never directly before `(`, so `x = f()` is not a value).
/// Values never start with `[`, so `[REDACTED]` is not redacted again.
macro_rules! pw_value {
    () => {
        r#"(?:\\{0,2}"([^"\\\r\n\[][^"\\\r\n]*)|\\{0,2}'([^'\\\r\n\[][^'\\\r\n]*)|([^\s"'\\,;(){}\[\]<>]{4,})(?:[\s"'\\,;)}\]>]|$))"#
    };
}

/// A token-like value (API keys): 8+ URL-safe characters.
macro_rules! key_value {
    () => {
        r#"(?:\\{0,2}"([^"\\\s\[][^"\\\s]{7,})|\\{0,2}'([^'\\\s\[][^'\\\s]{7,})|([A-Za-z0-9_\-.~+/=%]{8,})(?:[^A-Za-z0-9_\-.~+/=%(\[]|$))"#
    };
}

/// Whether `names` lists the names of [`BUILTINS`] in order, each once: a rule's detectors
/// (entries with one name) are adjacent, and no name is missing, extra or repeated. A `const fn`,
/// so that the public list of names is tied to the detectors at compile time.
pub(crate) const fn builtin_names_are(names: &[&str]) -> bool {
    const fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    let mut k = 0;
    let mut i = 0;
    while i < BUILTINS.len() {
        let name = BUILTINS[i].name;
        if i == 0 || !eq(BUILTINS[i - 1].name, name) {
            if k >= names.len() || !eq(names[k], name) {
                return false;
            }
            k += 1;
        }
        i += 1;
    }
    // Each name once (a rule's detectors not adjacent would list its name twice).
    let mut a = 0;
    while a < names.len() {
        let mut b = a + 1;
        while b < names.len() {
            if eq(names[a], names[b]) {
                return false;
            }
            b += 1;
        }
        a += 1;
    }
    k == names.len()
}

pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "email",
        // Local part: ASCII or Latin/Greek/Cyrillic letters (so `josé@` is caught, but CJK
        // text glued to an address survives), or quoted (`"john doe"@`). Domain labels: ASCII
        // (up to 63 bytes) or internationalised (RFC 6531: up to 15 characters, some not ASCII);
        // an ASCII TLD of 2-24 letters, a punycode TLD, or a non-ASCII TLD of 2-6 letters.
        pattern: concat!(
            r#"(?:"[^"\\\r\n@]{1,64}"|[0-9\p{Latin}\p{Greek}\p{Cyrillic}_%+\-][0-9\p{Latin}\p{Greek}\p{Cyrillic}._%+'\-]{0,63})@"#,
            r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?|[0-9A-Za-z\x{80}-\x{10FFFF}](?:[\-0-9A-Za-z\x{80}-\x{10FFFF}]{0,13}[0-9A-Za-z\x{80}-\x{10FFFF}])?)\.){1,8}",
            r"(?:xn--[A-Za-z0-9\-]{1,20}|[A-Za-z]{2,24}|[\p{L}--\p{ASCII}]{2,6})",
        ),
        kind: Kind::Window {
            back: 260,
            fwd: 540,
        },
        anchors: &["@"],
        exact: false,
        validator: Some(valid_email),
        viable: Some(viable_email),
        need: None,
    },
    Builtin {
        name: "phone",
        // International (`+CC` and 1 to 7 groups, E.164 lengths checked by the validator),
        // (NPA) NXX-XXXX, NPA-NXX-XXXX (area and exchange 2-9, so epoch seconds are not
        // phones), and fullwidth digits. Bare 10-digit numbers: see the context detector.
        pattern: concat!(
            r"(?-u:\B)\+[1-9][0-9]{0,3}(?:[-. \x{a0}]?(?:\([0-9]{1,4}\)|[0-9]{1,6})){1,7}(?-u:\b)",
            r"|(?-u:\B)\([2-9][0-9]{2}\)[ \x{a0}]?[2-9][0-9]{2}[-. \x{a0}][0-9]{4}(?-u:\b)",
            r"|(?-u:\b)[2-9][0-9]{2}[-. \x{a0}][2-9][0-9]{2}[-. \x{a0}][0-9]{4}(?-u:\b)",
            r"|[０-９]{2,4}[－\-]?[０-９]{2,4}[－\-]?[０-９]{4}",
        ),
        kind: Kind::Digits(PHONE),
        anchors: &["０", "１", "２", "３", "４", "５", "６", "７", "８", "９"],
        exact: false,
        validator: Some(valid_phone),
        viable: None,
        need: None,
    },
    Builtin {
        name: "phone",
        // National formats (`030 1234567`, `06 12 34 56 78`, `98765 43210`, `2535678183`)
        // that alone could be any number: only after a phone word (see `valid_context_phone`).
        pattern: r"(?-u:\b)(?:\([0-9]{1,5}\)[ \x{a0}]?)?[0-9]{1,12}(?:[-. \x{a0}][0-9]{1,12}){0,6}(?-u:\b)",
        kind: Kind::Digits(ANY_DIGITS),
        anchors: &[],
        exact: false,
        validator: Some(valid_context_phone),
        viable: None,
        need: None,
    },
    Builtin {
        name: "credit_card",
        pattern: r"(?-u:\b)(?:[0-9]{4}[- ][0-9]{4}[- ][0-9]{4}[- ][0-9]{4}|3[47][0-9]{2}[- ][0-9]{6}[- ][0-9]{5}|[0-9]{13,19})(?-u:\b)",
        kind: Kind::Digits(CARD),
        anchors: &[],
        exact: false,
        validator: Some(valid_card),
        viable: None,
        need: None,
    },
    Builtin {
        name: "ssn",
        pattern: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        kind: Kind::Digits(SSN),
        anchors: &[],
        exact: false,
        validator: Some(valid_ssn),
        viable: None,
        need: None,
    },
    Builtin {
        name: "ssn",
        // Nine digits without dashes (or with spaces or dots) only after an SSN word (see
        // `valid_context_ssn`).
        pattern: r"(?-u:\b)[0-9]{3}[ .]?[0-9]{2}[ .]?[0-9]{4}(?-u:\b)",
        kind: Kind::Digits(SSN_BARE),
        anchors: &[],
        exact: false,
        validator: Some(valid_context_ssn),
        viable: None,
        need: None,
    },
    Builtin {
        name: "openai_api_key",
        // sk-proj-, sk-svcacct-, sk-admin-, legacy sk-<48>; not sk-ant- (anthropic).
        pattern: r"(?-u:\b)sk-(?:[0-9A-Zb-z_]|a[0-9A-Za-mo-z_]|an[0-9A-Za-su-z_]|ant[0-9A-Za-z_])[A-Za-z0-9_\-]{16,}",
        kind: Kind::Start,
        anchors: &["sk-"],
        exact: true,
        validator: None,
        viable: Some(viable_openai),
        need: None,
    },
    Builtin {
        name: "anthropic_api_key",
        pattern: r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{16,}",
        kind: Kind::Start,
        anchors: &["sk-ant-"],
        exact: true,
        validator: None,
        viable: Some(viable_anthropic),
        need: None,
    },
    Builtin {
        name: "aws_access_key",
        pattern: r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        kind: Kind::Start,
        anchors: &[
            "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA",
        ],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "aws_secret_key",
        // 40 base64 characters within 48 characters after `aws` or `secret`, with upper,
        // lower case and a digit (so hex SHA-1s and words are not secrets). The context never
        // spans a bare `[` or `]`, so it cannot reach across an earlier replacement
        // (`[REDACTED]`, `[HASH:..]`); quoted subscripts (`environ["AWS_SECRET_ACCESS_KEY"]`,
        // `aws['secret']`) are crossed.
        pattern: r#"(?i-u:aws|secret)(?:[^\r\n\[\]]|\["|\['|"\]|'\]){0,48}?[^A-Za-z0-9/+=]([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        kind: Kind::Start,
        anchors: &["aws", "secret"],
        exact: false,
        validator: Some(valid_aws_secret),
        viable: None,
        // The 40 characters begin after the keyword (3 or 6 bytes), at most 48 context units
        // (a character of up to 4 bytes, or a 2-byte quoted bracket) and one separator
        // character (up to 4 bytes): at `s + 4` at the earliest, `s + 6 + 192 + 4` at the latest.
        need: Some(Need {
            class: is_b64,
            len: 40,
            min: 4,
            max: 202,
        }),
    },
    Builtin {
        name: "bearer_token",
        pattern: r"(?-u:\b)(?i-u:bearer)[ \t]+([A-Za-z0-9_\-.~+/]{16,}=*)",
        kind: Kind::Start,
        anchors: &["bearer"],
        exact: false,
        validator: None,
        viable: Some(viable_bearer),
        need: None,
    },
    Builtin {
        name: "bearer_token",
        // A bare JWT (JWS: header, payload, signature) or JWE (five segments) wherever it
        // stands: a bearer credential. The whole token, so no segment survives.
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*)?",
        kind: Kind::Start,
        // Found case-insensitively (one more needle in the folded search costs less than a
        // third pass of the case-sensitive one); the pattern checks the case.
        anchors: &["eyJ"],
        exact: false,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "bearer_token",
        // HTTP Basic credentials in an Authorization header (`user:password` in base64): a bearer
        // credential too. Only the credential is redacted.
        pattern: r"(?i-u:authorization)\\{0,2}[\x22']?[ \t]*[:=][ \t]*\\{0,2}[\x22']?(?i-u:basic)[ \t]+([A-Za-z0-9+/]{8,}={0,2})",
        kind: Kind::Start,
        anchors: &["authorization"],
        exact: false,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "github_token",
        pattern: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
        kind: Kind::Start,
        anchors: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "google_api_key",
        pattern: r"(?-u:\b)AIza[A-Za-z0-9_\-]{30,}",
        kind: Kind::Start,
        anchors: &["AIza"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "azure_connection_string",
        pattern: r"(?i-u:accountkey|sharedaccesskey)[ \t]*=[ \t]*([A-Za-z0-9+/]{16,}={0,2})|(?i-u:sharedaccesssignature)[ \t]*=[ \t]*([^\s;'\x22\\\[]{16,})",
        kind: Kind::Start,
        anchors: &["accountkey", "sharedaccesskey", "sharedaccesssignature"],
        exact: false,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        pattern: concat!(
            r"(?i-u:api[_\-]?key|api[_\-]?token|api[_\-]?secret|access[_\-]?key(?:[_\-]?id)?|secret[_\-]?key|client[_\-]?secret|app[_\-]?key|private[_\-]?token)",
            sep!(),
            key_value!()
        ),
        kind: Kind::Start,
        anchors: &[
            "api_key",
            "api-key",
            "apikey",
            "api_token",
            "api-token",
            "apitoken",
            "api_secret",
            "api-secret",
            "apisecret",
            "access_key",
            "access-key",
            "accesskey",
            "secret_key",
            "secret-key",
            "secretkey",
            "client_secret",
            "client-secret",
            "clientsecret",
            "app_key",
            "app-key",
            "appkey",
            "private_token",
            "private-token",
            "privatetoken",
        ],
        exact: false,
        validator: Some(valid_key_param),
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): GitLab personal, runner and deploy tokens.
        pattern: r"(?-u:\b)gl(?:pat|rt|dt|ptt)-[A-Za-z0-9_\-]{20,}",
        kind: Kind::Start,
        anchors: &["glpat-", "glrt-", "gldt-", "glptt-"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): npm access tokens.
        pattern: r"(?-u:\b)npm_[A-Za-z0-9]{36}",
        kind: Kind::Start,
        anchors: &["npm_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): PyPI upload tokens (a macaroon: `pypi-` + base64 of `\x02\x01\x08pypi.org`).
        pattern: r"(?-u:\b)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
        kind: Kind::Start,
        anchors: &["pypi-AgEIcHlwaS5vcmc"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): DigitalOcean personal access tokens.
        pattern: r"(?-u:\b)dop_v1_[a-f0-9]{64}",
        kind: Kind::Start,
        anchors: &["dop_v1_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Hugging Face access tokens.
        pattern: r"(?-u:\b)hf_[A-Za-z0-9]{30,}",
        kind: Kind::Start,
        anchors: &["hf_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Shopify access tokens and shared secrets.
        pattern: r"(?-u:\b)shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
        kind: Kind::Start,
        anchors: &["shpat_", "shpss_", "shpca_", "shppa_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Databricks personal access tokens.
        pattern: r"(?-u:\b)dapi[a-f0-9]{32}(?:-[0-9])?",
        kind: Kind::Start,
        anchors: &["dapi"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Square access tokens and OAuth secrets.
        pattern: r"(?-u:\b)sq0(?:atp|csp)-[0-9A-Za-z_\-]{22,}",
        kind: Kind::Start,
        anchors: &["sq0atp-", "sq0csp-"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): SendGrid API keys.
        pattern: r"(?-u:\b)SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        kind: Kind::Start,
        anchors: &["SG."],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Groq API keys.
        pattern: r"(?-u:\b)gsk_[A-Za-z0-9]{40,}",
        kind: Kind::Start,
        anchors: &["gsk_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): xAI API keys.
        pattern: r"(?-u:\b)xai-[A-Za-z0-9]{60,}",
        kind: Kind::Start,
        anchors: &["xai-"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Perplexity API keys.
        pattern: r"(?-u:\b)pplx-[A-Za-z0-9]{40,}",
        kind: Kind::Start,
        anchors: &["pplx-"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Replicate API tokens.
        pattern: r"(?-u:\b)r8_[A-Za-z0-9]{37,}",
        kind: Kind::Start,
        anchors: &["r8_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): LangSmith personal and service keys.
        pattern: r"(?-u:\b)lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}",
        kind: Kind::Start,
        anchors: &["lsv2_pt_", "lsv2_sk_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Pinecone API keys.
        pattern: r"(?-u:\b)pcsk_[A-Za-z0-9_]{40,}",
        kind: Kind::Start,
        anchors: &["pcsk_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Notion integration tokens (`ntn_`; the older `secret_` prefix is too common a word start to
        // search for).
        pattern: r"(?-u:\b)ntn_[A-Za-z0-9]{40,}",
        kind: Kind::Start,
        anchors: &["ntn_"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "generic_api_key_param",
        // Vendor tokens recognised by their prefix (public formats, as gitleaks lists them): Atlassian API tokens.
        pattern: r"(?-u:\b)ATATT3[A-Za-z0-9_\-=]{50,}",
        kind: Kind::Start,
        anchors: &["ATATT3"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "private_key",
        // The whole PEM block: header, optional Proc-Type/DEK-Info lines, base64 body (also
        // with literal `\n` escapes), footer. Without a footer, the body up to the first
        // character that cannot be in one.
        // The pieces are shared with `pem.rs`, which follows a block across the pieces of a
        // long text.
        pattern: concat!(
            pem_header!(),
            "(?:",
            pem_body!(),
            "*?",
            pem_footer!(),
            "|",
            pem_body!(),
            "*)"
        ),
        kind: Kind::Start,
        anchors: &["-----BEGIN"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "slack_token",
        pattern: r"(?-u:\b)(?:xox[abposr]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,})",
        kind: Kind::Start,
        anchors: &[
            "xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xapp-",
        ],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "slack_token",
        // Incoming-webhook and workflow URLs: whoever has one can post to the channel.
        pattern: r"(?-u:\b)hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}",
        kind: Kind::Start,
        anchors: &["hooks.slack.com/"],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "stripe_key",
        pattern: r"(?-u:\b)(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",
        kind: Kind::Start,
        anchors: &[
            "sk_live_", "sk_test_", "pk_live_", "pk_test_", "rk_live_", "rk_test_",
        ],
        exact: true,
        validator: None,
        viable: None,
        need: None,
    },
    Builtin {
        name: "password_field",
        // `password=...`, `"password": "..."`, `DB_PASSWORD=...`, `dbPass: ...`, `secret: ...`,
        // `token=...`, `pin: ...`; in prose `my password is hunter2`, `the PIN is 4521`; and
        // the password in `scheme://user:password@host`.
        pattern: concat!(
            r"(?i-u:password|passwd|passphrase|passcode|pwd|secret|token|pin|pass)",
            sep!(),
            pw_value!(),
            r"|(?i-u:password|passphrase|passcode|pin|pwd)[ \t]+(?i-u:is|was)[ \t]*:?[ \t]*",
            pw_value!(),
            r#"|://[^\s:/@"'<>\[\]\\]*:([^\s/@"'<>\[\]\\]+)@"#
        ),
        kind: Kind::Start,
        anchors: &[
            "password",
            "passwd",
            "passphrase",
            "passcode",
            "pass",
            "pwd",
            "pin",
            "secret",
            "token",
            "://",
        ],
        exact: false,
        validator: Some(valid_password_field),
        viable: Some(viable_password_field),
        need: None,
    },
];

/// An `@` that an email can contain: a local-part character before it (ASCII, or any
/// non-ASCII byte: Latin, Greek and Cyrillic letters are not ASCII), and after it a domain
/// label (an ASCII letter or digit, then letters, digits and `-`) followed by `.`. Bounded work
/// per `@`: at most 64 bytes are read after it.
fn viable_email(b: &[u8], at: usize, _: usize) -> bool {
    let local = |c: u8| !c.is_ascii() || c.is_ascii_alphanumeric() || b"._%+-\"'".contains(&c);
    if at == 0 || !local(b[at - 1]) {
        return false;
    }
    // A label is at most 63 ASCII bytes or 15 characters of at most 4 bytes.
    let label = |c: &u8| !c.is_ascii() || c.is_ascii_alphanumeric() || *c == b'-';
    let rest = &b[at + 1..b.len().min(at + 1 + 64)];
    if !rest
        .first()
        .is_some_and(|c| !c.is_ascii() || c.is_ascii_alphanumeric())
    {
        return false;
    }
    rest.iter().find(|c| !label(c)).is_some_and(|&c| c == b'.')
}

/// A cheaper pattern for a built-in rule: every match the rule's own pattern makes at a given
/// start is a match of it with the same span, and it ranks the paths of a match the same way
/// (each of its pieces is the rule's with a wider class or a looser bound). `fits` tells whether
/// one of its matches takes a path the rule's pattern has too; then that match is the rule's
/// own (the rule matches nowhere before its start, since the loose pattern does not, and its
/// best path from there is that one). A window whose matches all fit is searched with the
/// loose pattern alone; the rule's pattern is compiled, and the window searched again with
/// it, only when one does not (`Engine::search_span`).
pub(crate) struct Loose {
    pub(crate) rule: &'static str,
    pub(crate) pattern: &'static str,
    pub(crate) fits: Fits,
}

/// Whether the match `start..end` of `text` by a [`Loose`] pattern is one of its rule's.
pub(crate) type Fits = fn(&str, usize, usize) -> bool;

/// The built-in rules with a [`Loose`] pattern.
pub(crate) const LOOSE: &[Loose] = &[Loose {
    rule: "email",
    // The `email` pattern with an unbounded local part (`{0,63}` of Unicode script classes
    // was a third of its compilation), domain labels of any length and number, and any
    // non-ASCII characters as a TLD (`\p{L}` is ~650 ranges): 0.5 ms to compile instead of
    // 4 ms, paid by every process that meets an `@`.
    pattern: concat!(
        r#"(?:"[^"\\\r\n@]{1,64}"|[0-9\p{Latin}\p{Greek}\p{Cyrillic}_%+\-][0-9\p{Latin}\p{Greek}\p{Cyrillic}._%+'\-]*)@"#,
        r"(?:[0-9A-Za-z\x{80}-\x{10FFFF}](?:[\-0-9A-Za-z\x{80}-\x{10FFFF}]*[0-9A-Za-z\x{80}-\x{10FFFF}])?\.)+",
        r"(?:xn--[A-Za-z0-9\-]{1,20}|[A-Za-z]{2,24}|[\x{80}-\x{10FFFF}]{2,6})",
    ),
    fits: email_fits,
}];

/// Whether a match of the loose `email` pattern takes a path of the `email` pattern: an
/// unquoted local part of at most 64 characters (a quoted one has the same bound in both),
/// 1 to 8 labels, each of at most 63 ASCII characters or 15 characters, and a TLD that is
/// ASCII (the same alternatives in both) or made of non-ASCII letters (`\p{L}`).
fn email_fits(text: &str, s: usize, e: usize) -> bool {
    let m = &text[s..e];
    let Some(at) = m.find('@') else {
        return false;
    };
    let (local, domain) = (&m[..at], &m[at + 1..]);
    let within = |t: &str, n: usize| t.len() <= n || t.chars().count() <= n;
    if !local.starts_with('"') && !within(local, 64) {
        return false;
    }
    let Some(dot) = domain.rfind('.') else {
        return false;
    };
    let (labels, tld) = (&domain[..dot], &domain[dot + 1..]);
    let mut n = 0;
    for label in labels.split('.') {
        n += 1;
        if n > 8 || !within(label, if label.is_ascii() { 63 } else { 15 }) {
            return false;
        }
    }
    tld.is_ascii() || tld.chars().all(non_ascii_letter)
}

/// `[\p{L}--\p{ASCII}]`, the `email` pattern's class of TLD characters, from the same Unicode
/// tables the patterns are compiled with.
pub(crate) fn non_ascii_letter(c: char) -> bool {
    static RANGES: std::sync::OnceLock<Vec<(char, char)>> = std::sync::OnceLock::new();
    let ranges = RANGES.get_or_init(|| {
        use regex_syntax::hir::{Class, HirKind};
        match regex_syntax::parse(r"[\p{L}--\p{ASCII}]").map(|h| h.into_kind()) {
            Ok(HirKind::Class(Class::Unicode(class))) => class
                .ranges()
                .iter()
                .map(|r| (r.start(), r.end()))
                .collect(),
            // A constant class (tested): never taken.
            _ => Vec::new(),
        }
    });
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// A `password_field` keyword followed by the separator its pattern requires (`sep!()`:
/// up to 2 backslashes, an optional quote, spaces or tabs, then `=` or `:`; or, in prose,
/// spaces then `is`/`was`), or `://`. Given the anchor found (`e > s`), only it is tried;
/// given a position only (`e == s`), every keyword that occurs at `s` (`pass` is a prefix of
/// `password`).
fn viable_password_field(b: &[u8], s: usize, e: usize) -> bool {
    if b[s] == b':' {
        return b[s..].starts_with(b"://");
    }
    if e > s {
        // Called with the anchor that was found: the anchors are the keywords, so `b[s..e]`
        // is one, and a longer keyword at `s` is an anchor of its own.
        return separator_follows(b, e);
    }
    let keywords: &[&[u8]] = match b[s] | 0x20 {
        b'p' => &[
            b"password",
            b"passwd",
            b"passphrase",
            b"passcode",
            b"pwd",
            b"pin",
            b"pass",
        ],
        b's' => &[b"secret"],
        b't' => &[b"token"],
        _ => return false,
    };
    keywords.iter().any(|k| {
        b.get(s..s + k.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(k))
            && separator_follows(b, s + k.len())
    })
}

/// `sep!()` or a prose `is`/`was` begins at `i`.
fn separator_follows(b: &[u8], mut i: usize) -> bool {
    let start = i;
    let mut slashes = 0;
    while slashes < 2 && b.get(i) == Some(&b'\\') {
        i += 1;
        slashes += 1;
    }
    if matches!(b.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if matches!(b.get(i), Some(b'=' | b':')) {
        return true;
    }
    // Prose: at least one space, then `is` or `was`.
    let mut j = start;
    while matches!(b.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    j > start
        && [&b"is"[..], b"was"].iter().any(|w| {
            b.get(j..j + w.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(w))
        })
}

/// `b[from..from + len]` exists and is all `class`.
#[inline]
fn run_at(b: &[u8], from: usize, len: usize, class: fn(u8) -> bool) -> bool {
    b.get(from..from + len)
        .is_some_and(|r| r.iter().all(|&c| class(c)))
}

/// `[A-Za-z0-9/+]`, the characters of an AWS secret key.
pub(crate) fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

/// `[A-Za-z0-9_\-]`, the characters of an OpenAI or Anthropic key.
fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// `sk-` followed by 17 key characters (one of the pattern's first unit, which are all key
/// characters, then 16).
fn viable_openai(b: &[u8], s: usize, _: usize) -> bool {
    run_at(b, s + 3, 17, is_key_char)
}

/// `sk-ant-` followed by 16 key characters.
fn viable_anthropic(b: &[u8], s: usize, _: usize) -> bool {
    run_at(b, s + 7, 16, is_key_char)
}

/// `bearer`, then at least one space or tab, then 16 token characters
/// (`[A-Za-z0-9_\-.~+/]`).
fn viable_bearer(b: &[u8], s: usize, _: usize) -> bool {
    let mut i = s + 6;
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i > s + 6
        && run_at(b, i, 16, |c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'~' | b'+' | b'/')
        })
}

/// Not the `password@host` of `scheme://user:password@host` (`password_field` owns that),
/// so the host survives.
fn valid_email(text: &str, s: usize, _: usize, _: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    let from = s.saturating_sub(512);
    let seg_start = b[from..s]
        .iter()
        .rposition(|&c| {
            c.is_ascii_whitespace()
                || c.is_ascii_control()
                || matches!(
                    c,
                    b'"' | b'\'' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b',' | b';'
                )
        })
        .map_or(from, |i| from + i + 1);
    let seg = &b[seg_start..s];
    // `://`, or `:\/\/` inside a JSON string.
    let scheme = seg
        .windows(3)
        .rposition(|w| w == b"://")
        .map(|i| i + 3)
        .into_iter()
        .chain(seg.windows(5).rposition(|w| w == b":\\/\\/").map(|i| i + 5))
        .max();
    match scheme {
        Some(i) => seg[i..].contains(&b'/'),
        None => true,
    }
}

/// Luhn, 13-19 digits, a known issuer prefix.
fn valid_card(text: &str, s: usize, e: usize, _: &[(usize, usize)]) -> bool {
    let digits: Vec<u8> = text.as_bytes()[s..e]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let p2 = digits[0] * 10 + digits[1];
    let p4 = u32::from(p2) * 100 + u32::from(digits[2] * 10 + digits[3]);
    let issuer = digits[0] == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p2 == 35
        || p2 == 36
        || p2 == 38
        || p2 == 30
        || p2 == 62
        || p2 == 65
        || p4 == 6011
        || (644..=649).contains(&(p4 / 10));
    if !issuer {
        return false;
    }
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The length of the E.164 country code that `digits` (ASCII digits, the first not `0`)
/// begins with: codes are prefix-free, 1 and 7 have one digit, the listed ones two, all
/// others three (ITU-T E.164 assignments).
fn country_code_len(digits: &[u8]) -> usize {
    const TWO: &[u8] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    match digits {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO.contains(&((a - b'0') * 10 + (b - b'0'))) => 2,
        _ => 3,
    }
}

/// National significant number lengths of the largest numbering plans; others get the
/// ITU-T E.164 bounds (4 to 12 digits after the country code, 15 in all).
fn national_lengths(cc: &[u8]) -> (usize, usize) {
    match cc {
        b"1" | b"7" | b"52" | b"91" => (10, 10),
        b"33" | b"34" | b"61" => (9, 9),
        b"44" | b"81" => (9, 10),
        b"49" => (6, 13),
        b"39" => (6, 11),
        b"86" => (8, 11),
        b"55" => (10, 11),
        _ => (4, 12),
    }
}

/// An international number `+CC ...` whose digits fit its country code's lengths; a `(0)`
/// trunk prefix is not counted; when a separator follows the first group, that group is the
/// whole country code (`+3 1234 5678` is not `+31`). At least 9 digits in all (what the
/// digit prefilter needs).
fn e164_ok(value: &[u8]) -> bool {
    let mut digits = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < value.len() {
        if value[i..].starts_with(b"(0)") {
            i += 3;
            continue;
        }
        if value[i].is_ascii_digit() {
            if n == digits.len() {
                return false;
            }
            digits[n] = value[i];
            n += 1;
        }
        i += 1;
    }
    let digits = &digits[..n];
    if !(9..=15).contains(&n) || digits[0] == b'0' {
        return false;
    }
    let cc = country_code_len(digits);
    // Written with a separator after the first group: that group is the country code.
    let first = value[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if value.len() > first + 1 && first != cc {
        return false;
    }
    let (lo, hi) = national_lengths(&digits[..cc]);
    (lo..=hi).contains(&(n - cc))
}

/// `phone` digit forms: international numbers must fit E.164 (see [`e164_ok`]).
fn valid_phone(text: &str, s: usize, e: usize, _: &[(usize, usize)]) -> bool {
    let b = &text.as_bytes()[s..e];
    b.first() != Some(&b'+') || e164_ok(b)
}

/// Words that make a number near them something other than a phone number.
const NOT_PHONE_WORDS: Words = Words::new(&[
    "invoice",
    "order",
    "ticket",
    "account",
    "acct",
    "tracking",
    "reference",
    "transaction",
    "serial",
    "isbn",
    "epoch",
    "timestamp",
    "bytes",
    "id:",
    "id=",
]);

/// Words that make a number near them a phone number (any case).
const PHONE_WORDS: Words = Words::new(&[
    "phone",
    "tel",
    "mobile",
    "mob.",
    "cell",
    "call",
    "whatsapp",
    "fax",
    "sms",
    "text me",
    "dial",
    "number is",
    "my number",
    "contact",
    "reach me",
    "handy",
    "telefon",
    "téléphone",
    "tél",
    "teléfono",
    "móvil",
    "celular",
    "portable",
    "電話",
    "携帯",
    "연락처",
    "手机",
    "电话",
]);

/// Words that make nine digits near them a US social security number (any case).
const SSN_WORDS: Words = Words::new(&["ssn", "social security", "soc sec", "soc. sec"]);

/// How far before a number its context word may begin, in bytes.
const CONTEXT_BACK: usize = 48;

/// The up to [`CONTEXT_BACK`] bytes before `s`, from the last line break, `[` or `]` on
/// (context never reaches across a line or a replacement).
fn context_before(b: &[u8], s: usize) -> &[u8] {
    let from = s.saturating_sub(CONTEXT_BACK);
    let from = b[from..s]
        .iter()
        .rposition(|&c| matches!(c, b'\n' | b'\r' | b'[' | b']'))
        .map_or(from, |i| from + i + 1);
    &b[from..s]
}

/// Context words (lower case; ASCII letters match in any case), with the bytes they begin
/// with: a place in the context where none begins (a digit, a space, most letters) is
/// passed over without comparing every word.
struct Words {
    list: &'static [&'static str],
    first: [bool; 256],
}

impl Words {
    const fn new(list: &'static [&'static str]) -> Words {
        let mut first = [false; 256];
        let mut i = 0;
        while i < list.len() {
            let c = list[i].as_bytes()[0];
            first[c as usize] = true;
            first[c.to_ascii_uppercase() as usize] = true;
            i += 1;
        }
        Words { list, first }
    }

    /// Some word occurs in `hay`, not right after an ASCII letter (`tel` is not in `hotel`).
    fn found_in(&self, hay: &[u8]) -> bool {
        (0..hay.len())
            .filter(|&i| self.first[usize::from(hay[i])])
            .filter(|&i| i == 0 || !hay[i - 1].is_ascii_alphabetic())
            .any(|i| {
                self.list.iter().any(|w| {
                    hay.get(i..i + w.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(w.as_bytes()))
                })
            })
    }
}

/// A national number after a phone word: 9 to 12 digits, not beginning with `1` (epoch
/// seconds) unless 11 digits (`1` + NANP), not a date (`2024-01-15 ...`), a phone word in the
/// [`CONTEXT_BACK`] bytes before it and no invoice/order/ticket/id word there.
fn valid_context_phone(text: &str, s: usize, e: usize, _: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    let v = &b[s..e];
    let n = v.iter().filter(|c| c.is_ascii_digit()).count();
    if !(9..=12).contains(&n) {
        return false;
    }
    let first = v.iter().find(|c| c.is_ascii_digit()).copied();
    if first == Some(b'1') && n != 11 {
        return false;
    }
    if v.len() > 5
        && v[..4].iter().all(u8::is_ascii_digit)
        && matches!(v[4], b'-' | b'.')
        && (v.starts_with(b"19") || v.starts_with(b"20"))
    {
        return false;
    }
    let before = context_before(b, s);
    PHONE_WORDS.found_in(before) && !NOT_PHONE_WORDS.found_in(before)
}

/// Nine SSN digits after an SSN word (`ssn`, `social security`, `soc sec`) in the
/// [`CONTEXT_BACK`] bytes before them: area not 000, 666 or 9xx; group not 00; serial not
/// 0000.
fn valid_context_ssn(text: &str, s: usize, e: usize, _: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    let mut d = [0u8; 9];
    let mut n = 0;
    for &c in &b[s..e] {
        if c.is_ascii_digit() {
            if n == 9 {
                return false;
            }
            d[n] = c;
            n += 1;
        }
    }
    let before = context_before(b, s);
    n == 9
        && &d[..3] != b"000"
        && &d[..3] != b"666"
        && d[0] != b'9'
        && &d[3..5] != b"00"
        && &d[5..] != b"0000"
        && SSN_WORDS.found_in(before)
}

/// Area not 000, 666 or 9xx; group not 00; serial not 0000.
fn valid_ssn(text: &str, s: usize, e: usize, _: &[(usize, usize)]) -> bool {
    let t = &text.as_bytes()[s..e];
    if t.len() != 11 {
        return false;
    }
    let area = &t[0..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &t[4..6] != b"00" && &t[7..11] != b"0000"
}

/// Mixed case and a digit; not all hex (a git SHA-1 is 40 hex characters).
fn valid_aws_secret(text: &str, _: usize, _: usize, spans: &[(usize, usize)]) -> bool {
    spans.iter().all(|&(s, e)| {
        let v = &text.as_bytes()[s..e];
        v.iter().any(u8::is_ascii_uppercase)
            && v.iter().any(u8::is_ascii_lowercase)
            && v.iter().any(u8::is_ascii_digit)
            && !v.iter().all(u8::is_ascii_hexdigit)
    })
}

/// Values that are a type, a literal or a word about a value, not a value ([`placeholder`]).
const PLACEHOLDER_WORDS: &[&str] = &[
    "true",
    "false",
    "null",
    "none",
    "nil",
    "undefined",
    "str",
    "string",
    "int",
    "integer",
    "bool",
    "boolean",
    "bytes",
    "secretstr",
    "optional",
    "any",
    "object",
    "redacted",
    "hidden",
    "masked",
    "removed",
    "omitted",
    "required",
    "n/a",
    "tbd",
    "todo",
];
/// Beginnings of references to where a secret lives, or of placeholders ([`placeholder`]).
const PLACEHOLDER_REFS: &[&str] = &[
    "${",
    "{{",
    "$(",
    "%(",
    "<%",
    "#{",
    "process.env",
    "os.environ",
    "os.getenv",
    "getenv(",
    "secrets.",
    "env.",
    "vault:",
    "your_",
    "your-",
    "your ",
    "<your",
];

/// Values that stand for a secret without being one: booleans, null, type names, masks and
/// text already redacted (`***`, `<redacted>`, `xxxx`), references to where the secret lives
/// (`${DB_PASSWORD}`, `{{ .Values.password }}`, `$API_KEY`, `os.environ[...]`), and
/// placeholders (`<your-api-key>`, `YOUR_TOKEN_HERE`).
pub(crate) fn placeholder(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    if v.is_empty()
        || v.iter()
            .all(|c| b"*x.#-_".contains(&c.to_ascii_lowercase()))
    {
        return true;
    }
    if v.starts_with(b"\xe2\x80\xa2") || (v[0] == b'<' && v[v.len() - 1] == b'>') {
        return true;
    }
    if v[0] == b'$'
        && v.len() > 1
        && v[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
    {
        return true;
    }
    // The words and references are lower case: compared ignoring ASCII case, without a
    // lower-case copy of the value (a value can be megabytes: a keyword, then a line of
    // base64 that runs on).
    PLACEHOLDER_WORDS
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
        || PLACEHOLDER_REFS.iter().any(|r| {
            v.get(..r.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(r.as_bytes()))
        })
        || memchr::memchr2_iter(b'r', b'R', v).any(|i| {
            v.get(i..i + 8)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"redacted"))
        })
}

/// Words after `password is` (or `password:`) that say something about a password instead of
/// being one.
const NOT_A_PASSWORD: &[&str] = &[
    "required",
    "incorrect",
    "invalid",
    "wrong",
    "expired",
    "missing",
    "empty",
    "not",
    "too",
    "the",
    "set",
    "correct",
    "valid",
    "stored",
    "hashed",
    "encrypted",
    "being",
    "still",
    "now",
    "also",
    "reset",
    "changed",
    "different",
    "same",
    "used",
    "weak",
    "strong",
    "long",
    "short",
    "only",
    "case",
    "never",
    "always",
    "saved",
    "sent",
    "shown",
    "needed",
    "optional",
    "protected",
    "generated",
    "rotated",
    "updated",
    "accepted",
    "rejected",
    "verified",
    "ignored",
    "unknown",
    "incorrect.",
    "invalid.",
    "required.",
    "expired.",
    "wrong.",
];

/// `generic_api_key_param`: the value is not a placeholder (see [`placeholder`]).
fn valid_key_param(text: &str, _: usize, _: usize, spans: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    !spans.iter().any(|&(a, z)| placeholder(&b[a..z]))
}

/// Words before `_token` that make it a count or a vocabulary entry, not a credential.
pub(crate) const TOKEN_COUNT_WORDS: &[&str] = &[
    "max",
    "min",
    "num",
    "total",
    "input",
    "output",
    "prompt",
    "completion",
    "per",
    "next",
    "stop",
    "end",
    "start",
    "eos",
    "bos",
    "pad",
    "unk",
    "cls",
    "sep",
    "mask",
    "special",
    "count",
    "new",
    "first",
    "last",
    "cached",
    "reasoning",
    "context",
    "n",
];

/// Keyword boundaries: `pwd`, `secret` and `token` must not be glued to a preceding letter or
/// digit (`topsecret`, `cwd`); `max_token: 1344` and `token: 1344` (counts) are not
/// credentials.
fn valid_password_field(text: &str, s: usize, e: usize, spans: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    if b[s..].starts_with(b"://") {
        return true;
    }
    if spans.iter().any(|&(a, z)| placeholder(&b[a..z])) {
        return false;
    }
    let kw_len = b[s..e]
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(e - s);
    let kw = text[s..s + kw_len].to_ascii_lowercase();
    let prev = if s == 0 { None } else { Some(b[s - 1]) };
    if spans.iter().any(|&(a, z)| {
        let v = b[a..z].to_ascii_lowercase();
        NOT_A_PASSWORD.iter().any(|w| v == w.as_bytes())
    }) {
        return false;
    }
    if kw.starts_with("pass") && kw != "pass" {
        return true;
    }
    // `dbPass`, `clientSecret`, `authToken`: a camelCase word boundary.
    let camel = prev.is_some_and(|c| c.is_ascii_lowercase()) && b[s].is_ascii_uppercase();
    if prev.is_some_and(|c| c.is_ascii_alphanumeric()) && !camel {
        return false;
    }
    if kw == "token" {
        if prev.is_some_and(|c| c == b'_' || c == b'-' || c == b'.') {
            let word_start = b[..s - 1]
                .iter()
                .rposition(|c| !c.is_ascii_alphanumeric())
                .map_or(0, |i| i + 1);
            let word = text[word_start..s - 1].to_ascii_lowercase();
            if TOKEN_COUNT_WORDS.contains(&word.as_str()) {
                return false;
            }
        }
        // A bare number after `token` is a count.
        if spans
            .iter()
            .all(|&(a, z)| b[a..z].iter().all(u8::is_ascii_digit))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// The placeholder test compares ignoring ASCII case without a lower-case copy: the
        /// same answers as comparing a lower-cased copy (its former self).
        #[test]
        fn placeholders_are_found_in_any_case_without_a_copy(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(vec![
                    "TRUE", "null", "None", "n/A", "Redacted", "REDACTED", "redacte", "${", "{{",
                    "Process.Env", "YOUR_", "your ", "<your", "secrets.", "xx", "*", "$", "<", ">",
                    "\u{2022}", "é", "R", "r", " ", "_", "-",
                ]).prop_map(str::to_owned),
                "[a-zA-Z0-9]{0,6}",
            ], 0..8),
        ) {
            let v = parts.concat();
            let lower_copy = |v: &[u8]| -> bool {
                let t = v.trim_ascii();
                if t.is_empty()
                    || t.iter().all(|c| b"*x.#-_".contains(&c.to_ascii_lowercase()))
                    || t.starts_with(b"\xe2\x80\xa2")
                    || (t[0] == b'<' && t[t.len() - 1] == b'>')
                    || (t[0] == b'$'
                        && t.len() > 1
                        && t[1..].iter().all(|c| {
                            c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'
                        }))
                {
                    return true;
                }
                let lower = t.to_ascii_lowercase();
                PLACEHOLDER_WORDS
                .iter()
                .any(|w| lower == w.as_bytes())
                    || PLACEHOLDER_REFS
                    .iter()
                    .any(|r| lower.starts_with(r.as_bytes()))
                    || lower.windows(8).any(|w| w == b"redacted")
            };
            proptest::prop_assert_eq!(placeholder(v.as_bytes()), lower_copy(v.as_bytes()), "{:?}", v);
        }
    }

    /// Context words are found in any ASCII case, at the start of the context or after a
    /// non-letter only, and the lists are lower case (a capital in a list would never have
    /// matched the lower-cased context the words were once compared with).
    #[test]
    fn context_words() {
        for words in [&PHONE_WORDS, &NOT_PHONE_WORDS, &SSN_WORDS] {
            for w in words.list {
                assert_eq!(*w, w.to_lowercase(), "{w}");
                assert!(words.found_in(w.as_bytes()));
                assert!(words.found_in(w.to_ascii_uppercase().as_bytes()));
                assert!(words.found_in(format!("my {w}: ").as_bytes()));
                assert!(words.found_in(format!("12{w}").as_bytes()));
                // (`téléphone` holds `phone` after a non-ASCII letter.)
                if w.is_ascii() {
                    assert!(!words.found_in(format!("x{w}").as_bytes()), "{w}");
                }
            }
        }
        assert!(PHONE_WORDS.found_in("Téléphone ".as_bytes()));
        assert!(!PHONE_WORDS.found_in(b"hotel 1234 5678 90"));
        assert!(!PHONE_WORDS.found_in(b"1234 5678 9012 3456 7890 "));
        assert!(
            !PHONE_WORDS.found_in(b"te"),
            "a word cut by the end of the context"
        );
    }

    #[test]
    fn luhn() {
        let t = "4111 1111 1111 1111";
        assert!(valid_card(t, 0, t.len(), &[]));
        let t = "4111 1111 1111 1112";
        assert!(!valid_card(t, 0, t.len(), &[]));
        let t = "1702165957211";
        assert!(!valid_card(t, 0, t.len(), &[]));
    }

    /// Every match of `pattern` found by an anchored search from some char boundary of `text`.
    fn anchored_matches(pattern: &str, text: &str) -> Vec<std::ops::Range<usize>> {
        use regex_automata::{Anchored, Input, meta::Regex};
        let re = Regex::new(pattern).unwrap();
        (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .filter_map(|i| re.search(&Input::new(text).range(i..).anchored(Anchored::Yes)))
            .map(|m| m.range())
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// A match that begins anywhere contains only viable anchors: for `email` its `@`, for
        /// `password_field` its start.
        #[test]
        fn every_match_is_viable(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => proptest::sample::select(vec![
                        "@", "a@b.co", "bob@example.com", "x@y", "é@", "@-a.b", "password",
                        "PassWD", "token", "secret", "pwd", "://", "u:p@h", "\\", "\"", "'",
                        " ", "\t", "=", ":", "=>", ":=", ".", "-", "[", "]", "\n", "ab12",
                    ]).prop_map(str::to_owned),
                    1 => "[a-z0-9.\\-]{1,70}",
                    1 => "\\PC{0,3}",
                ],
                0..30,
            )
        ) {
            let text = parts.concat();
            let b = text.as_bytes();
            for rule in BUILTINS.iter().filter(|r| r.viable.is_some()) {
                let viable = rule.viable.unwrap();
                for m in anchored_matches(rule.pattern, &text) {
                    let ok = if rule.name == "email" {
                        let at = m.start + text[m.clone()].find('@').unwrap();
                        viable(b, at, at + 1)
                    } else {
                        viable(b, m.start, m.start)
                    };
                    proptest::prop_assert!(ok, "{}: {:?} in {:?}", rule.name, &text[m], text);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Every match of a rule with a `Viable` begins at a viable anchor (checked with the
        /// anchor's end too, as the engine calls it), and every match of a rule with a `Need`
        /// has its run in reach: near misses (39 value characters, values at the edge of the
        /// context, 4-byte characters in it, keywords at the end of the text).
        #[test]
        fn every_match_is_viable_and_has_its_run(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(vec![
                        "sk-", "sk-ant-", "sk-proj-", "aws", "AWS", "secret", "SeCrEt", "bearer",
                        "Bearer", "password", "token", "pwd", " ", "\t", "=", ": ", "\"", "'",
                        "[\"", "\"]", "['", "[", "]", "-", "_", "/", "+", "\n", "😀", "é", "日",
                        "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/+Ab",
                        "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/+A",
                        "abcdefghijklmnop", "ABCDEFGHIJKLMNOP1", "0123456789",
                    ]).prop_map(str::to_owned),
                    1 => "[A-Za-z0-9/+_\\-]{1,45}",
                    1 => "[😀é日 .]{1,50}",
                    // A keyword, context (up to 49 units, some of 4 bytes), a separator and a
                    // value of 38 to 42 characters: matches at the edge of the reach.
                    3 => (
                        proptest::sample::select(vec!["aws", "SECRET", "sk-", "Bearer", "sk-ant-"]),
                        proptest::prop_oneof![
                            proptest::strategy::Just(Vec::new()),
                            proptest::collection::vec(
                                proptest::sample::select(vec![
                                    "😀", "é", "x", " ", "[\"", "\"]", "=", "\t",
                                ]),
                                40..50,
                            ),
                            proptest::collection::vec(
                                proptest::sample::select(vec!["😀", "é", "x", " ", "[\"", "\t"]),
                                0..40,
                            ),
                        ],
                        proptest::sample::select(vec![" ", "😀", "=", "", "\t", "\""]),
                        proptest::prop_oneof![
                            3 => "[A-Za-z0-9/+]{40}",
                            1 => "[A-Za-z0-9/+]{38,42}",
                            2 => "[A-Za-z0-9_\\-]{14,20}",
                        ],
                    )
                        .prop_map(|(k, ctx, sep, v)| format!("{k}{}{sep}{v}", ctx.concat())),
                ],
                0..8,
            )
        ) {
            let text = parts.concat();
            let b = text.as_bytes();
            for rule in BUILTINS.iter().filter(|r| r.viable.is_some() || r.need.is_some()) {
                for m in anchored_matches(rule.pattern, &text) {
                    if let Some(viable) = rule.viable && rule.name != "email" {
                        let s = m.start;
                        // The anchor's end, as the anchor search reports it.
                        let e = rule
                            .anchors
                            .iter()
                            .filter(|a| b[s..].len() >= a.len()
                                && b[s..s + a.len()].eq_ignore_ascii_case(a.as_bytes()))
                            .map(|a| s + a.len())
                            .max()
                            .unwrap_or(s);
                        proptest::prop_assert!(viable(b, s, s), "{}: {:?}", rule.name, &text[m.clone()]);
                        proptest::prop_assert!(viable(b, s, e), "{}: {:?}", rule.name, &text[m.clone()]);
                    }
                    if let Some(need) = rule.need {
                        let s = m.start;
                        let ok = (s + need.min..=s + need.max).any(|j| {
                            b.get(j..j + need.len).is_some_and(|r| r.iter().all(|&c| (need.class)(c)))
                        });
                        proptest::prop_assert!(ok, "{}: {:?}", rule.name, &text[m]);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Every ASCII match of a digit rule is whole digit runs that fit one of its
        /// `Shapes`, unless one of its `unless` bytes is in the match or just before it.
        #[test]
        fn digit_matches_fit_their_shapes(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => proptest::sample::select(vec![
                        "555-234-5678", "555-123-4567", "5552345678", "4111 1111 1111 1111",
                        "4111-1111-1111-1111", "4111111111111111", "3782 822463 10005",
                        "320-89-2209", "+1 ", "+44 20 7946 0958", "(555) 234-5678", "\u{a0}",
                        "-", " ", ".", "(", ")", "x", "_", "]", "[", "０９０-１２３４-５６７８",
                    ]).prop_map(str::to_owned),
                    2 => "[0-9]{1,20}",
                ],
                0..12,
            )
        ) {
            let text = parts.concat();
            let b = text.as_bytes();
            for rule in BUILTINS {
                let Kind::Digits(shapes) = rule.kind else { continue };
                for m in anchored_matches(rule.pattern, &text) {
                    let (ms, me) = (m.start, m.end);
                    if !text[ms..me].is_ascii() {
                        continue; // fullwidth digits: found by their own anchors
                    }
                    if shapes.whole || b[ms.saturating_sub(1)..me].iter().any(|c| shapes.unless.contains(c)) {
                        continue;
                    }
                    // The maximal digit runs the match touches.
                    let mut runs = Vec::new();
                    let mut j = ms;
                    while j < me {
                        if b[j].is_ascii_digit() {
                            let mut a = j;
                            while a > 0 && b[a - 1].is_ascii_digit() {
                                a -= 1;
                            }
                            let mut z = j;
                            while z < b.len() && b[z].is_ascii_digit() {
                                z += 1;
                            }
                            runs.push((a, z));
                            j = z;
                        } else {
                            j += 1;
                        }
                    }
                    let whole = runs.first().is_some_and(|r| r.0 == ms)
                        && runs.last().is_some_and(|r| r.1 == me);
                    let fits = shapes.runs.iter().any(|shape| {
                        shape.len() == runs.len()
                            && shape.iter().zip(&runs).all(|(r, &(a, z))| {
                                (r.min..=r.max).contains(&(z - a)) && b[a] >= r.first
                            })
                    });
                    proptest::prop_assert!(whole && fits, "{}: {:?} in {:?}", rule.name, &text[ms..me], text);
                }
            }
        }
    }

    /// The farthest `aws_secret_key` values: 48 context characters of 4 bytes and a 4-byte
    /// separator after `secret` (the run at `s + 202`), and the same with 49 (no match).
    #[test]
    fn aws_secret_need_reaches_the_farthest_value() {
        use regex_automata::{Anchored, Input, meta::Regex};
        let rule = BUILTINS
            .iter()
            .find(|r| r.name == "aws_secret_key")
            .unwrap();
        let need = rule.need.unwrap();
        let re = Regex::new(rule.pattern).unwrap();
        let value = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/+Ab";
        for (kw, units, sep, matches) in [
            ("secret", 48, "😀", true),
            ("aws", 48, "😀", true),
            ("SECRET", 48, " ", true),
            ("secret", 0, " ", true),
            ("secret", 49, "😀", false),
        ] {
            let text = format!("{kw}{}{sep}{value} ", "😀".repeat(units));
            let input = Input::new(&text).anchored(Anchored::Yes);
            assert_eq!(re.search(&input).is_some(), matches, "{units} {sep:?}");
            let run = text.find(value).unwrap();
            assert!(run >= need.min && (!matches || run <= need.max), "{run}");
        }
    }

    /// `viable_password_field` gives the same answer with the anchor's end as without.
    #[test]
    fn password_viable_with_and_without_anchor_end() {
        for t in [
            "password=x",
            "passwd : y",
            "passphrase\\\"=z",
            "pwd",
            "secret",
            "token\t:",
            "TOKEN \\\\'= v",
            "password token",
            "Secret_key=1",
            "://u:p@h",
            "pwd\\\\\\=",
        ] {
            let b = t.as_bytes();
            let kw = [
                "password",
                "passwd",
                "passphrase",
                "pwd",
                "secret",
                "token",
                "://",
            ]
            .iter()
            .find(|k| b.len() >= k.len() && b[..k.len()].eq_ignore_ascii_case(k.as_bytes()))
            .unwrap();
            assert_eq!(
                viable_password_field(b, 0, kw.len()),
                viable_password_field(b, 0, 0),
                "{t:?}"
            );
        }
    }

    #[test]
    fn viable_examples() {
        let email = |t: &str| viable_email(t.as_bytes(), t.find('@').unwrap(), 0);
        assert!(email("bob@example.com"));
        assert!(email("josé@x-y.org"));
        assert!(!email("a@a@a@"));
        assert!(!email("@property"));
        assert!(!email("x @b.co"));
        assert!(!email("x@.co"));
        let pw = |t: &str| viable_password_field(t.as_bytes(), 0, 0);
        assert!(pw("password=x") && pw("Token: x") && pw("secret\\\\\" : x") && pw("://u:p@h"));
        assert!(!pw("password token") && !pw("secret_key=x") && !pw("pwd"));
    }

    #[test]
    fn windows_cover_max_match_length() {
        for b in BUILTINS {
            // Exact anchors are only sound for case-sensitive patterns.
            assert!(!b.exact || !b.pattern.contains("(?i"), "{}", b.name);
            let hir = regex_syntax::parse(b.pattern).unwrap();
            let max = hir.properties().maximum_len();
            match b.kind {
                Kind::Window { back, fwd } => {
                    let max = max.expect("windowed rules are bounded");
                    // The local part is at most 64 chars of at most 3 bytes (+@ ...).
                    assert!(back >= 64 * 3 + 4 && fwd + back >= max, "{}: {max}", b.name);
                }
                Kind::Digits(_) if !b.anchors.is_empty() => {
                    // Fullwidth digits are windowed by 64 bytes; ASCII forms are found
                    // through their digit clusters, whatever their length.
                    assert!(max.expect("bounded") <= 64, "{}: {max:?}", b.name);
                }
                Kind::Digits(_) => {}
                Kind::Start => {}
            }
        }
    }
}
