//! slipway-core: the contracts between Slipway's steps and the logic behind them.
//!
//! Every Lambda in `functions/` is a thin shell over a function of this crate, so the same
//! code runs in Lambda, in the `slipway` CLI and in tests.

pub mod alarms;
pub mod aws;
pub mod config;
pub mod error;
pub mod input;
pub mod model;
pub mod state;
pub mod steps;
pub mod why;

pub use error::StepError;

/// Whether this is a build for the local test bed (slipway-core's `testbed-clock` feature,
/// which only the test-bed scripts enable; release builds never do).
pub const TESTBED_BUILD: bool = cfg!(feature = "testbed-clock");

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` (UTC), for people reading records.
///
/// (slipway-sim has its own copy: the simulator stands for AWS and depends on nothing of
/// Slipway's.)
pub fn wire_time(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn wire_time_formats_utc() {
        assert_eq!(super::wire_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::wire_time(1_573_869_274), "2019-11-16 01:54:34");
        assert_eq!(super::wire_time(951_782_400), "2000-02-29 00:00:00");
    }
}
