//! RFC 3339 timestamps (`2026-01-18T00:00:00Z`, `…+02:00`, optional fraction) to Unix milliseconds.
//!
//! The manifest's validity windows are RFC 3339 strings. A dozen lines of calendar arithmetic avoid a date
//! crate in the mobile build and keep the accepted syntax exactly the RFC's `date-time` (no leap seconds, no
//! dates before 1970: neither can occur in a manifest).

/// Parses an RFC 3339 `date-time` into milliseconds since the Unix epoch (fractions below 1 ms truncated).
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }

    let mut rest = &b[19..];
    let mut millis = 0;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, c) in tail[..n.min(3)].iter().enumerate() {
            millis += u64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &tail[n..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::try_from(h * 60 + m).ok()?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };

    let days = days_from_civil(i64::try_from(year).ok()?, month, day);
    let local_secs = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()?;
    let utc_secs = local_secs - offset_minutes * 60;
    u64::try_from(utc_secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(millis)
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let (month, day) = (month as i64, day as i64);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339 as p;

    #[test]
    fn known_instants() {
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p("2025-09-16T21:25:49.422Z"), Some(1_758_057_949_422));
        assert_eq!(p("2022-10-13T08:58:02.136Z"), Some(1_665_651_482_136));
        assert_eq!(p("2000-02-29T12:00:00+02:00"), Some(951_818_400_000));
        assert_eq!(p("2000-02-29t10:00:00.9999z"), Some(951_818_400_999));
        assert_eq!(p("2024-12-31T23:59:59-00:30"), Some(1_735_691_399_000));
    }

    #[test]
    fn invalid_rejected() {
        for bad in [
            "",
            "2025-09-16",
            "2025-09-16T21:25:49",
            "2025-09-16 21:25:49Z",
            "2025-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-06-30T23:59:60Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0100",
            "2025-01-01T00:00:00+24:00",
            "1969-12-31T23:59:59Z",
            "+025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
