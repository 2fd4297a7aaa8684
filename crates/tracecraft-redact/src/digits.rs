//! The digit scan: clusters of at least 9 ASCII digits (numbers with gaps of `-. ()` or NBSP),
//! the candidates of the digit rules (`phone`, `credit_card`, `ssn`). Texts are counted in
//! 32-byte blocks with 64-bit SWAR words; only regions with 9 digits are scanned byte by byte,
//! and a 128-bit word skips short numbers (times, dates, versions) without a byte loop.

/// The maximal runs of ASCII digits of `b` (`b` begins at `base` of the text), as
/// `(start, end)` in the text, into `runs` (cleared first).
pub(crate) fn digit_runs(b: &[u8], base: usize, runs: &mut Vec<(usize, usize)>) {
    runs.clear();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let a = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        runs.push((base + a, base + i));
    }
}

const BLOCK: usize = 32;

#[inline]
fn count_digits(block: &[u8]) -> u32 {
    let mut c = 0u8;
    for &b in block {
        c += u8::from(b.wrapping_sub(b'0') < 10);
    }
    u32::from(c)
}

/// [`count_digits`] of a full block, with 64-bit words: per word, the high bit of each digit
/// byte shifted down to its low bit; the sum of the four words (at most 4 per byte) is added
/// up across bytes by one multiplication.
#[inline]
fn count_block(block: &[u8]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut sum = 0u64;
    for w in block.chunks_exact(8) {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let t = u64::from_le_bytes(x) ^ (ONES * u64::from(b'0'));
        sum += (!((t | HIGH) - ONES * 10) & !t & HIGH) >> 7;
    }
    (sum.wrapping_mul(ONES) >> 56) as u32
}

/// [`count_digits`] of a text of at most [`SHORT`](crate::anchors::SHORT) bytes, eight bytes at a time (the last
/// word zero-padded; per byte lane at most 8 words, added across lanes by one multiplication).
#[inline]
pub(crate) fn count_short(b: &[u8]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let digits = |x: [u8; 8]| {
        let t = u64::from_le_bytes(x) ^ (ONES * u64::from(b'0'));
        (!((t | HIGH) - ONES * 10) & !t & HIGH) >> 7
    };
    let mut sum = 0u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        sum += digits(x);
    }
    let rest = words.remainder();
    let mut x = [0u8; 8];
    x[..rest.len()].copy_from_slice(rest);
    sum += digits(x);
    (sum.wrapping_mul(ONES) >> 56) as u32
}

/// The first ASCII digit in `b[from..to]`, or `to`; eight bytes at a time.
#[inline]
fn next_digit(b: &[u8], mut from: usize, to: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while from + 8 <= to {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[from..from + 8]);
        // Per byte, with no borrow between bytes: `t = x ^ '0'` is below 10 exactly for
        // digits; `(t | 0x80) - 10` has its high bit set iff `t & 0x7f >= 10`.
        let t = u64::from_le_bytes(w) ^ (ONES * u64::from(b'0'));
        let digit = !((t | HIGH) - ONES * 10) & !t & HIGH;
        if digit != 0 {
            return from + (digit.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < to && !b[from].is_ascii_digit() {
        from += 1;
    }
    from
}

const ONES: u128 = u128::from_le_bytes([1; 16]);
const HIGH: u128 = ONES * 0x80;

/// The high bit of each byte of `w` that is an ASCII digit.
#[inline]
fn digit_bits(w: u128) -> u128 {
    // As in `next_digit`: `t = x ^ '0'` is below 10 exactly for digits.
    let t = w ^ (ONES * u128::from(b'0'));
    !((t | HIGH) - ONES * 10) & !t & HIGH
}

/// The high bit of each byte of `w` that cannot be in a digit cluster: an ASCII byte outside
/// `0x20..=0x39` (the ASCII gap bytes `-. ()` and the digits lie in that range; the NBSP bytes
/// are not ASCII). Per byte, with no carry between bytes: `y + 0x60` reaches `0x80` iff
/// `y >= 0x20`, `y + 0x46` iff `y >= 0x3A`.
#[inline]
fn breaker_bits(w: u128) -> u128 {
    let a = w & !HIGH;
    let below = !(a + ONES * 0x60) & HIGH;
    let above = (a + ONES * 0x46) & HIGH;
    (below | above) & !w & HIGH
}

/// For a digit at `p`: the number of bytes that a scan for clusters may skip from `p`, because
/// no cluster starts in them and none reaches past them: up to the last byte within 16 bytes
/// that cannot be in a cluster when no run of 9 bytes that can comes before it (a cluster of
/// 9 digits spans 9 bytes at least), else up to the first such byte when fewer than 9 digits
/// come before it; else 0.
#[inline]
fn short_run(b: &[u8], p: usize) -> usize {
    let Some(w) = b.get(p..p + 16) else {
        return 0;
    };
    let mut x = [0u8; 16];
    x.copy_from_slice(w);
    let w = u128::from_le_bytes(x);
    let br = breaker_bits(w);
    if br == 0 {
        return 0;
    }
    // High bit of byte `j`: bytes `j..j + 9` all may be in a cluster.
    let ok = !br & HIGH;
    let ok2 = ok & (ok >> 8);
    let ok4 = ok2 & (ok2 >> 16);
    let ok9 = ok4 & (ok4 >> 32) & (ok >> 64);
    // The last breaker: byte `last` (< 16); runs of 9 that end before it start below `last - 8`.
    let last = 15 - br.leading_zeros() as usize / 8;
    if last < 9 || ok9 & ((1u128 << (8 * (last - 8))) - 1) == 0 {
        return last + 1;
    }
    // `br`'s lowest set bit is the high bit of byte `k` (< 16).
    let k = br.trailing_zeros() as usize / 8;
    // Fewer than 9 bytes before it hold fewer than 9 digits (no popcount on baseline x86-64).
    if k < 9 || (digit_bits(w) & ((1u128 << (8 * k)) - 1)).count_ones() < 9 {
        k + 1
    } else {
        0
    }
}

#[inline]
pub(crate) fn is_digit_or_gap(b: u8) -> bool {
    b.is_ascii_digit() || is_gap(b)
}

#[inline]
fn is_gap(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b' ' | b'(' | b')' | 0xC2 | 0xA0)
}

/// Calls `f(first_digit, last_digit + 1)` for clusters of at least 9 ASCII digits whose
/// gaps are at most 3 bytes of `-. ()` or NBSP. Only 64-byte regions with 9 digits are
/// scanned byte by byte; the rest is counted in 32-byte blocks.
pub(crate) fn digit_clusters(b: &[u8], mut f: impl FnMut(usize, usize)) {
    let n = b.len();
    let nblocks = n.div_ceil(BLOCK);
    let count = |i: usize| -> u32 {
        match b.get(i * BLOCK..(i + 1) * BLOCK) {
            Some(block) => count_block(block),
            None if i < nblocks => count_digits(&b[i * BLOCK..]),
            None => 0,
        }
    };
    let mut scanned = 0usize;
    let mut cur = count(0);
    for i in 0..nblocks {
        let next = count(i + 1);
        if cur + next >= 9 {
            let region_end = ((i + 2) * BLOCK).min(n);
            let from = (i * BLOCK).saturating_sub(40).max(scanned);
            scanned = scanned.max(scan_region(b, from, region_end, &mut f));
        }
        cur = next;
    }
}

/// [`digit_clusters`] of `b` into a list, the second half of a long text on a second thread
/// when `beside` (it is cut at a byte that cannot be in a cluster, so that no cluster crosses
/// the cut; a text without such a byte near its middle is scanned on one thread).
pub(crate) fn digit_clusters_list(b: &[u8], beside: bool) -> Vec<(usize, usize)> {
    let mut clusters = Vec::new();
    let cut = if beside {
        breaker_near(b, b.len() / 2)
    } else {
        None
    };
    let Some(m) = cut else {
        digit_clusters(b, |s, e| clusters.push((s, e)));
        return clusters;
    };
    let second_half = || {
        let mut v = Vec::new();
        digit_clusters(&b[m..], |s, e| v.push((m + s, m + e)));
        v
    };
    let (rest, ()) = crate::engine::on_two_threads("tracecraft-redact-digits", second_half, || {
        digit_clusters(&b[..m], |s, e| clusters.push((s, e)));
    });
    clusters.extend(rest);
    clusters
}

/// A position at or after `from`, within 4 KiB, whose byte is neither a digit nor a gap byte
/// (no chain holds it).
fn breaker_near(b: &[u8], from: usize) -> Option<usize> {
    let to = b.len().min(from.saturating_add(4096));
    (from..to).find(|&i| !is_digit_or_gap(b[i]))
}

/// Calls `f` for the clusters whose first digit is in `b[p..region_end]` (a cluster may
/// reach past `region_end`), found digit by digit; returns where the scan stopped (after the
/// last cluster or chain it read).
#[inline]
fn scan_region(
    b: &[u8],
    mut p: usize,
    region_end: usize,
    f: &mut impl FnMut(usize, usize),
) -> usize {
    while p < region_end {
        p = next_digit(b, p, region_end);
        if p >= region_end {
            break;
        }
        let skip = short_run(b, p);
        if skip > 0 {
            p += skip;
            continue;
        }
        let (digits, last) = chain(b, p);
        if digits >= 9 {
            f(p, last + 1);
        }
        p = last + 1;
    }
    p
}

/// The chain that begins with the digit at `p`: consecutive digits at most 3 gap bytes apart.
/// Returns its number of digits and the position of its last digit.
#[inline]
fn chain(b: &[u8], p: usize) -> (u32, usize) {
    let n = b.len();
    let mut digits = 0u32;
    let mut last = p;
    let mut j = p;
    loop {
        if j < n && b[j].is_ascii_digit() {
            digits += 1;
            last = j;
            j += 1;
            continue;
        }
        let mut g = j;
        while g < n && g - last <= 3 && is_gap(b[g]) {
            g += 1;
        }
        if g < n && g - last <= 4 && g > j && b[g].is_ascii_digit() {
            j = g;
        } else {
            break;
        }
    }
    (digits, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::SHORT;
    use proptest::strategy::Strategy;

    fn clusters(s: &str) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        digit_clusters(s.as_bytes(), |a, b| v.push((a, b)));
        v
    }

    #[test]
    fn next_digit_matches_scalar() {
        let bytes: Vec<u8> = (0..=255u8)
            .chain((0..=255u8).rev())
            .chain(b"ab9".iter().copied())
            .collect();
        for from in 0..bytes.len() {
            for to in [from, from + 1, from + 9, bytes.len()] {
                let to = to.min(bytes.len());
                let want = (from..to)
                    .find(|&i| bytes[i].is_ascii_digit())
                    .unwrap_or(to);
                assert_eq!(next_digit(&bytes, from, to), want, "{from}..{to}");
            }
        }
    }

    /// The definition: every maximal chain of digits (consecutive digits at most 3 gap bytes
    /// apart) with at least 9 digits, scanned byte by byte from the start.
    fn clusters_naive(b: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut p = 0;
        while p < b.len() {
            if !b[p].is_ascii_digit() {
                p += 1;
                continue;
            }
            let (start, mut last, mut digits) = (p, p, 1);
            let mut j = p + 1;
            while j < b.len() && j - last <= 4 {
                if b[j].is_ascii_digit() {
                    (last, digits) = (j, digits + 1);
                } else if !is_gap(b[j]) {
                    break;
                }
                j += 1;
            }
            if digits >= 9 {
                v.push((start, last + 1));
            }
            p = last + 1;
        }
        v
    }

    #[test]
    fn count_short_matches_scalar() {
        let mut bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        bytes.extend(b"0123456789".repeat(8));
        for i in 0..bytes.len() {
            for len in 0..=SHORT.min(bytes.len() - i) {
                let t = &bytes[i..i + len];
                assert_eq!(count_short(t), count_digits(t), "{i} {len}");
            }
        }
    }

    #[test]
    fn count_block_matches_scalar() {
        let mut bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        bytes.extend(b"0123456789".repeat(8));
        for i in 0..bytes.len() - BLOCK {
            let block = &bytes[i..i + BLOCK];
            assert_eq!(count_block(block), count_digits(block), "{i}");
        }
        assert_eq!(count_block(&[b'7'; BLOCK]), 32);
    }

    #[test]
    fn short_run_examples() {
        // A breaker within 16 bytes with fewer than 9 digits before it: skip past it.
        assert_eq!(short_run(b"2025-03-14T10:00:00.000Z", 0), 11);
        // Every run before the last breaker in 16 bytes is shorter than 9: skip past it.
        assert_eq!(short_run(b"10:00:00.000Z ab", 0), 16);
        assert_eq!(short_run(b"1234567x9abcdefgh", 0), 16);
        assert_eq!(short_run(b"12345678 x12", 0), 0);
        // 9 digits before the breaker, no breaker, or fewer than 16 bytes: no skip.
        assert_eq!(short_run(b"123456789x......", 0), 0);
        assert_eq!(short_run(b"1 2 3 4 5 6 7 8 9", 0), 0);
        assert_eq!(short_run(b"12345x", 0), 0);
        // Non-ASCII bytes (NBSP and others) never count as breakers.
        assert_eq!(short_run("1\u{a0}2é3日4567890123".as_bytes(), 0), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The block filter and the 16-byte skip find exactly the clusters of the definition,
        /// across 32-byte blocks and next to non-ASCII characters.
        #[test]
        fn clusters_equal_naive(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => "[0-9]{1,12}",
                    2 => proptest::sample::select(vec![
                        "-", ".", " ", "(", ")", "\u{a0}", "  ", "---", "- ", "....",
                    ]).prop_map(str::to_owned),
                    1 => "[a-zA-Z:T/_,]{1,3}",
                    1 => proptest::sample::select(vec![
                        "é", "日", "\u{c2a0}", "\u{ff15}", "\u{20ac}", "\n",
                    ]).prop_map(str::to_owned),
                ],
                0..60,
            )
        ) {
            let s = parts.concat();
            let b = s.as_bytes();
            for from in 0..b.len().min(40) {
                let t = &b[from..];
                let mut got = Vec::new();
                digit_clusters(t, |a, z| got.push((a, z)));
                proptest::prop_assert_eq!(&got, &clusters_naive(t));
                // Cut near its middle at a byte no chain holds, the two halves scanned apart
                // (the second on a second thread) give the same clusters.
                proptest::prop_assert_eq!(&got, &digit_clusters_list(t, true));
            }
        }
    }

    #[test]
    fn clusters_found() {
        assert_eq!(clusters("call 555-123-4567 now"), vec![(5, 17)]);
        assert!(clusters("2025-03-14T10:00:00.000Z").is_empty());
        assert_eq!(clusters("(635) 743-4106"), vec![(1, 14)]);
        let long = format!("{}{}", "x".repeat(100), "595\u{a0}206\u{a0}5450");
        assert_eq!(clusters(&long), vec![(100, 114)]);
        assert!(clusters("1 2 3 4 5 6 7 8").is_empty());
    }
}
