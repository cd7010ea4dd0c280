//! The three time formats in play: the EC2 tree's `2019-01-21T09:00:43Z`
//! and `21 Jan 2019 09:00:43 GMT`, and the RFC 1123 dates Azure's
//! scheduled events carry (`Mon, 21 Jan 2019 09:00:43 GMT`). No clock or
//! time zone crate in a plugin this small: civil dates from day counts.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count: (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn seconds_of(days: i64, hms: &str) -> Option<i64> {
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let valid = parts.next().is_none() && h < 24 && m < 60 && s < 61;
    valid.then_some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// `2019-01-21T09:00:43Z` (fractions of a second are dropped).
pub fn parse_iso(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let valid = ymd.next().is_none() && (1..=12).contains(&m) && (1..=31).contains(&d);
    let time = time.split('.').next()?;
    seconds_of(days_from_civil(y, m as u32, d as u32), time).filter(|_| valid)
}

/// `21 Jan 2019 09:00:43 GMT`, as the EC2 maintenance events write dates.
pub fn parse_aws(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let (day, year) = (day.parse::<u32>().ok()?, year.parse::<i64>().ok()?);
    (1..=31).contains(&day).then_some(())?;
    seconds_of(days_from_civil(year, month, day), time)
}

/// `Mon, 21 Jan 2019 09:00:43 GMT` (RFC 1123, as Azure's `NotBefore`).
pub fn rfc1123(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[month as usize - 1];
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let at = 1_548_061_243; // 2019-01-21 09:00:43 UTC, a Monday
        assert_eq!(parse_iso("2019-01-21T09:00:43Z"), Some(at));
        assert_eq!(parse_iso("2019-01-21T09:00:43.5Z"), Some(at));
        assert_eq!(parse_aws("21 Jan 2019 09:00:43 GMT"), Some(at));
        assert_eq!(rfc1123(at), "Mon, 21 Jan 2019 09:00:43 GMT");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        assert_eq!(parse_iso("2019-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso("2019-01-01 00:00:00"), None);
        assert_eq!(parse_aws("21 Foo 2019 09:00:43 GMT"), None);
        assert_eq!(parse_aws("21 Jan 2019 25:00:43 GMT"), None);
    }
}
