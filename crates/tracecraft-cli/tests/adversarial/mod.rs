//! The adversarial input families of issue 19, generated deterministically (byte-identical
//! on every machine). One copy, used by the linear-growth test (`tests/linear.rs`) and by
//! `cargo xtask bench cli` (which includes this file by path).

/// One family: a name and a generator of exactly `n` bytes.
pub(crate) struct Family {
    pub(crate) name: &'static str,
    make: fn(usize, &mut Rng) -> Vec<u8>,
}

impl Family {
    /// The input of this family with exactly `n` bytes; the same bytes on every call, and
    /// a prefix of every larger input of the family (so that a growth ratio compares the
    /// same text: the engine's speed on random text depends on the text, not only on its size).
    pub(crate) fn generate(&self, n: usize) -> Vec<u8> {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut v = (self.make)(n, &mut rng);
        v.truncate(n);
        v
    }
}

/// xorshift64*: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n as u64) as usize
    }

    fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len())]
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const KEYWORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "Authorization",
    "Bearer",
    "aws",
    "AKIA",
    "sk-",
    "ghp_",
    "xoxb-",
    "key",
    "@",
    "://",
];

fn repeat(unit: &[u8], n: usize) -> Vec<u8> {
    unit.iter().copied().cycle().take(n).collect()
}

fn random(n: usize, r: &mut Rng, alphabet: &[u8]) -> Vec<u8> {
    (0..n).map(|_| r.pick(alphabet)).collect()
}

/// Every family. All are one line except `pem_no_footer_lines`: a PEM header then 64-column
/// base64 lines and no footer, which the CLI's chunker must not split (the whole input is
/// one unit of work).
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        name: "base64_random",
        make: |n, r| random(n, r, B64),
    },
    Family {
        name: "password=_repeat",
        make: |n, _| repeat(b"password=", n),
    },
    Family {
        name: "sk-_repeat",
        make: |n, _| repeat(b"sk-", n),
    },
    Family {
        name: "at_repeat",
        make: |n, _| repeat(b"@", n),
    },
    Family {
        name: "digits_and_spaces",
        make: |n, r| {
            (0..n)
                .map(|_| {
                    if r.below(4) == 0 {
                        b' '
                    } else {
                        r.pick(b"0123456789")
                    }
                })
                .collect()
        },
    },
    Family {
        name: "alnum_run",
        make: |n, r| random(n, r, ALNUM),
    },
    Family {
        name: "hex_run",
        make: |n, r| random(n, r, HEX),
    },
    Family {
        name: "bearer_repeat",
        make: |n, _| repeat(b"Bearer ", n),
    },
    Family {
        name: "keyword_dense",
        make: |n, r| {
            let mut v = Vec::with_capacity(n + 32);
            while v.len() < n {
                v.extend_from_slice(KEYWORDS[r.below(KEYWORDS.len())].as_bytes());
                v.extend_from_slice([&b" "[..], b"=", b": ", b"="][r.below(4)]);
            }
            v
        },
    },
    Family {
        name: "pem_no_footer",
        make: |n, r| {
            let mut v = b"-----BEGIN RSA PRIVATE KEY-----".to_vec();
            let body = random(n.saturating_sub(v.len()), r, B64);
            v.extend(body);
            v
        },
    },
    Family {
        name: "pem_no_footer_lines",
        make: |n, r| {
            let mut v = b"-----BEGIN RSA PRIVATE KEY-----\n".to_vec();
            while v.len() < n {
                let line = random(64.min(n - v.len()), r, B64);
                v.extend(line);
                v.push(b'\n');
            }
            v
        },
    },
];
