//! All-or-nothing groups of command-line flags (`--kms-*`, `--trusted-store-*`): a service is
//! either configured, every required flag given and valid, or not at all. Half a configuration
//! is a usage error, and every problem of the group is reported at once (STYLE rule 13), so an
//! operator fixes a command line in one go.

use std::fmt;

/// One group's validation in progress.
pub(crate) struct FlagGroup {
    errors: Vec<String>,
}

impl FlagGroup {
    /// `None` when no flag of the group is given (the service is off). Otherwise the group, with
    /// one error already recorded per required flag that is missing.
    pub(crate) fn given(
        group: &str,
        required: &[(&str, Option<&str>)],
        optional_given: bool,
    ) -> Option<Self> {
        if required.iter().all(|(_, v)| v.is_none()) && !optional_given {
            return None;
        }
        let errors = required
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| {
                format!("{name} is required when any {group} flag is given (all or nothing)")
            })
            .collect();
        Some(Self { errors })
    }

    /// Parses `value` of `flag` when given; a failure is recorded as `"{flag} {value:?}: {why}"`.
    pub(crate) fn value<T, E: fmt::Display>(
        &mut self,
        flag: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        self.parse(flag, value, parse, true)
    }

    /// As [`Self::value`], for a value too long or too secret to repeat: `"{flag}: {why}"`.
    pub(crate) fn quiet<T, E: fmt::Display>(
        &mut self,
        flag: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        self.parse(flag, value, parse, false)
    }

    fn parse<T, E: fmt::Display>(
        &mut self,
        flag: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
        repeat_value: bool,
    ) -> Option<T> {
        let value = value?;
        parse(value)
            .map_err(|e| {
                self.errors.push(if repeat_value {
                    format!("{flag} {value:?}: {e}")
                } else {
                    format!("{flag}: {e}")
                })
            })
            .ok()
    }

    /// Records a problem that is not one flag's.
    pub(crate) fn push(&mut self, error: String) {
        self.errors.push(error);
    }

    /// Every problem recorded, or none.
    ///
    /// # Errors
    /// The problems, one message each.
    pub(crate) fn finish(self) -> Result<(), Vec<String>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_is_off_and_half_is_every_problem_at_once() {
        assert!(FlagGroup::given("--x-*", &[("--x-a", None), ("--x-b", None)], false).is_none());
        let mut g = FlagGroup::given("--x-*", &[("--x-a", Some("1")), ("--x-b", None)], false)
            .expect("a flag was given");
        assert_eq!(
            g.value("--x-a", Some("z"), |v| v
                .parse::<u8>()
                .map_err(|e| e.to_string())),
            None
        );
        assert_eq!(
            g.quiet("--x-c", Some("7"), |v| v
                .parse::<u8>()
                .map_err(|e| e.to_string())),
            Some(7)
        );
        assert_eq!(
            g.value::<u8, String>("--x-d", None, |_| unreachable!()),
            None
        );
        let errors = g.finish().unwrap_err();
        assert_eq!(
            errors,
            [
                "--x-b is required when any --x-* flag is given (all or nothing)",
                "--x-a \"z\": invalid digit found in string",
            ]
        );
        // An optional flag alone also switches the group on.
        assert!(FlagGroup::given("--x-*", &[("--x-a", None)], true).is_some());
    }
}
