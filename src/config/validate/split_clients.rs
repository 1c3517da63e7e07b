//! `split_clients STRING $name { PERCENT VALUE; ... * VALUE; }` as
//! `ngx_http_split_clients_module.c` reads it: percentages with at most two decimals
//! become consecutive slices of the 32-bit hash space, in file order.

use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

/// 100% in hundredths of a percent.
const WHOLE: u32 = 10_000;

/// `ngx_atofp(text, 2)`: a percentage in hundredths (`0.5` is 50); `None` when it is
/// not a number, has more than two decimals or is too large.
fn hundredths(text: &str) -> Option<u32> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !(int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())) || frac.len() > 2 {
        return None;
    }
    let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    int.checked_mul(100)?.checked_add(frac)
}

impl Validator<'_> {
    /// `split_clients STRING $name { ... }` at http level.
    pub(super) fn split_clients_block(&mut self, d: &Directive) -> Result<SplitClientsConf> {
        let name = super::rewrite::declared_name(d, d.arg(1))?;
        let key = super::values::templ(d, d.arg(0), &self.names)?;
        let mut parts = Vec::new();
        let (mut sum, mut last) = (0u32, 0u32);
        for line in d.block.as_deref().unwrap_or_default() {
            let percent = line.name.as_str();
            if line.args.len() != 1 || line.block.is_some() {
                return Err(ConfigError::hinted(
                    &line.span,
                    "invalid number of the split_clients parameters",
                    "each line is PERCENT% VALUE; or * VALUE;",
                ));
            }
            let share = if percent == "*" {
                None
            } else {
                let n = percent
                    .strip_suffix('%')
                    .and_then(hundredths)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ConfigError::hinted(
                            &line.span,
                            format!("invalid percent value \"{percent}\""),
                            "a percentage with at most two decimals (0.5%, 25%), or *",
                        )
                    })?;
                Some(n)
            };
            // `*` takes the rest: nothing may follow it but another `*`.
            sum = match share {
                Some(n) => sum.saturating_add(n),
                None => WHOLE,
            };
            if sum > WHOLE {
                return Err(ConfigError::hinted(
                    &line.span,
                    "percent total is greater than 100%",
                    "the percentages of a split_clients block add up to 100% at most; \"*\" takes what is left",
                ));
            }
            let bound = share.map(|n| {
                // nginx: last += percent * 0xffffffff / 10000, in 32 bits; the sum
                // is at most 100%, so it never wraps.
                let slice = u64::from(n) * u64::from(u32::MAX) / u64::from(WHOLE);
                last = last.wrapping_add(u32::try_from(slice).unwrap_or(u32::MAX));
                last
            });
            parts.push((bound, line.arg(0).to_owned()));
        }
        Ok(SplitClientsConf {
            name: name.to_owned(),
            key,
            parts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::hundredths;

    #[test]
    fn percentages_as_ngx_atofp() {
        assert_eq!(hundredths("0.5"), Some(50));
        assert_eq!(hundredths("20"), Some(2000));
        assert_eq!(hundredths("33.33"), Some(3333));
        assert_eq!(hundredths(".5"), Some(50));
        assert_eq!(hundredths("5."), Some(500));
        assert_eq!(hundredths("50.005"), None);
        assert_eq!(hundredths("a"), None);
        assert_eq!(hundredths("."), None);
        assert_eq!(hundredths("1.2.3"), None);
    }
}
