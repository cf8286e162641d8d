//! A small RFC 3339 date-time parser for JSON timestamps such as
//! `2022-12-08T09:46:59.5Z` or `2022-12-08T10:46:59+01:00`.
//!
//! JSON meters may send their time as a string instead of a number; this is
//! all the date handling core needs, so it is written out here rather than
//! pulling a date library into the crate every binary links.

/// Milliseconds since the Unix epoch, or `None` if `s` is not an RFC 3339
/// date-time. Fractions finer than a millisecond are rounded, like numeric
/// timestamps. Accepts `T`/`t`/space between date and time and `Z`/`z`.
pub(crate) fn parse_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut p = Parser { b, at: 0 };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    if !matches!(p.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = p.digits(2)?;
    p.expect(b':')?;
    let minute = p.digits(2)?;
    p.expect(b':')?;
    let second = p.digits(2)?;

    // Fraction: any number of digits; only the first four matter for
    // rounding to milliseconds.
    let mut frac_ms = 0i64;
    if p.peek() == Some(b'.') {
        p.at += 1;
        let mut scale = 1000 * 10; // tenths of a millisecond
        let mut tenths = 0i64;
        let mut n = 0;
        while let Some(d) = p.peek().filter(u8::is_ascii_digit) {
            scale /= 10;
            tenths += i64::from(d - b'0') * scale;
            p.at += 1;
            n += 1;
        }
        if n == 0 {
            return None;
        }
        frac_ms = (tenths + 5) / 10;
    }

    let offset_min = match p.next()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let h = p.digits(2)?;
            p.expect(b':')?;
            let m = p.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    if p.at != b.len() {
        return None;
    }

    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // A leap second (60) is allowed by RFC 3339; it simply rolls into the
    // next minute here, which is as good as any reading of it.
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let d = self.next().filter(u8::is_ascii_digit)?;
            v = v * 10 + i64::from(d - b'0');
        }
        Some(v)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, exact for every year).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ms("2022-12-08T09:46:59Z"), Some(1_670_492_819_000));
        assert_eq!(parse_ms("2022-12-08T10:46:59+01:00"), Some(1_670_492_819_000));
        assert_eq!(parse_ms("2022-12-08t04:16:59-05:30"), Some(1_670_492_819_000));
        assert_eq!(parse_ms("2022-12-08 09:46:59.25z"), Some(1_670_492_819_250));
        assert_eq!(parse_ms("2022-12-08T09:46:59.0004Z"), Some(1_670_492_819_000));
        assert_eq!(parse_ms("2022-12-08T09:46:59.0005Z"), Some(1_670_492_819_001));
        assert_eq!(parse_ms("2022-12-08T09:46:59.123456789Z"), Some(1_670_492_819_123));
        assert_eq!(parse_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_ms("2000-03-01T00:00:00Z"), Some(951_868_800_000));
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for bad in [
            "",
            "2022-12-08",
            "2022-12-08T09:46:59",
            "2022-12-08T09:46Z",
            "2022-12-08T09:46:59.Z",
            "2022-12-08T09:46:59Zjunk",
            "2022-13-08T09:46:59Z",
            "2023-02-29T09:46:59Z",
            "1900-02-29T00:00:00Z",
            "2022-12-00T09:46:59Z",
            "2022-12-08T24:00:00Z",
            "2022-12-08T09:60:00Z",
            "2022-12-08T09:46:59+24:00",
            "2022-12-08T09:46:59+0100",
            "２０２２-12-08T09:46:59Z",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
    }
}
