//! Suppression decisions per purpose: erasure, consent, objection, retention.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn decide(
    out: &OutputPlan,
    subject: Option<&str>,
    aliases: &[String],
    erased: bool,
    state: &dyn SubjectState,
    event_time_ms: i64,
    now_ms: i64,
) -> Option<Suppression> {
    if erased {
        return Some(Suppression::Erasure);
    }
    let objected = || {
        subject
            .into_iter()
            .chain(aliases.iter().map(String::as_str))
            .any(|s| state.consent(s, out.purpose) == Some(false))
    };
    match out.basis {
        // The subject's own grant already says it has not objected: only
        // its aliases are asked again (one table lookup fewer per purpose).
        Basis::Consent => match subject {
            Some(s)
                if state.consent(s, out.purpose) == Some(true)
                    && !aliases
                        .iter()
                        .any(|a| state.consent(a, out.purpose) == Some(false)) => {}
            _ => return Some(Suppression::Consent),
        },
        Basis::LegitimateInterest => {
            if objected() {
                return Some(Suppression::Objection);
            }
        }
        Basis::Contract | Basis::LegalObligation | Basis::VitalInterests | Basis::PublicTask => {}
    }
    if event_time_ms < now_ms.saturating_sub(out.retention_ms) {
        return Some(Suppression::Expired);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryState;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_795_392_000_000;

    fn out(basis: Basis) -> OutputPlan {
        OutputPlan {
            purpose: 0,
            name: "p".into(),
            topic: "t".into(),
            basis,
            retention_ms: 30 * DAY,
            spans: Vec::new(),
            keks: Vec::new(),
        }
    }

    #[test]
    fn decisions_by_basis_subject_state_and_age() {
        let mut st = MemoryState::new(&["p"]);
        st.apply_consent(None, Some(br#"{"subject":"s-yes","purposes":{"p":true}}"#))
            .unwrap();
        st.apply_consent(None, Some(br#"{"subject":"s-no","purposes":{"p":false}}"#))
            .unwrap();
        use Basis::{Consent, Contract, LegitimateInterest as Li};
        use Suppression::{Consent as NoConsent, Erasure, Expired, Objection};
        // (basis, subject, aliases, erased, age in days, expected)
        type Row<'a> = (
            Basis,
            Option<&'a str>,
            &'a [&'a str],
            bool,
            i64,
            Option<Suppression>,
        );
        let table: &[Row<'_>] = &[
            (Consent, Some("s-yes"), &[], false, 0, None),
            (Consent, Some("s-none"), &[], false, 0, Some(NoConsent)),
            (Consent, None, &[], false, 0, Some(NoConsent)),
            (Consent, None, &["s-yes"], false, 0, Some(NoConsent)),
            (Consent, Some("s-yes"), &["s-no"], false, 0, Some(NoConsent)),
            (Consent, Some("s-no"), &[], false, 0, Some(NoConsent)),
            (Consent, Some("s-none"), &[], false, 40, Some(NoConsent)),
            (Consent, Some("s-yes"), &[], false, 30, None),
            (Consent, Some("s-yes"), &[], false, 31, Some(Expired)),
            (Li, Some("s-none"), &[], false, 0, None),
            (Li, None, &[], false, 0, None),
            (Li, Some("s-no"), &[], false, 0, Some(Objection)),
            (Li, None, &["s-no"], false, 0, Some(Objection)),
            (Li, Some("s-yes"), &[], true, 0, Some(Erasure)),
            (Li, Some("s-none"), &[], false, 31, Some(Expired)),
            (Contract, Some("s-no"), &[], false, 0, None),
            (Contract, Some("s-yes"), &[], true, 0, Some(Erasure)),
            (Contract, None, &[], false, 31, Some(Expired)),
        ];
        for (i, &(basis, subject, aliases, erased, age, want)) in table.iter().enumerate() {
            let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
            let got = decide(
                &out(basis),
                subject,
                &aliases,
                erased,
                &st,
                NOW - age * DAY,
                NOW,
            );
            assert_eq!(got, want, "row {i}: {basis:?} {subject:?} {aliases:?}");
        }
    }
}
