//! The class taxonomy: the built-in classes plus a policy's own.
//!
//! Classes are dot-separated paths; a class covers every class below it. This
//! module only answers questions about names; it never looks at data.

use std::collections::BTreeMap;

/// Built-in classes with a one-line description.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("public", "public information"),
    ("internal", "internal, non-personal business data"),
    ("pii", "personal data"),
    ("pii.identifier", "identifiers of a person"),
    ("pii.identifier.customer_id", "customer id"),
    ("pii.identifier.account_id", "account id"),
    ("pii.identifier.device_id", "device id"),
    ("pii.identifier.cookie_id", "cookie id"),
    ("pii.identifier.ip_address", "IP address"),
    ("pii.identifier.national_id", "national id (SSN and alike)"),
    ("pii.name", "name"),
    ("pii.contact", "contact data"),
    ("pii.contact.email", "e-mail address"),
    ("pii.contact.phone", "phone number"),
    ("pii.contact.address", "postal address"),
    ("pii.contact.postal_code", "postal code"),
    ("pii.date_of_birth", "date of birth"),
    ("pii.location", "location"),
    ("pii.location.precise", "precise location"),
    ("pii.location.coarse", "coarse location"),
    ("pii.financial", "financial data"),
    ("pii.financial.card", "payment card number"),
    ("pii.financial.bank_account", "bank account (IBAN)"),
    ("pii.financial.income", "income"),
    ("pii.demographic", "demographic data"),
    ("pii.demographic.gender", "gender"),
    ("pii.demographic.age", "age"),
    ("behavioral", "behavioural data"),
    ("behavioral.purchase", "purchases"),
    ("behavioral.browsing", "browsing"),
    ("behavioral.usage", "product usage"),
    (
        "sensitive",
        "special categories of personal data (GDPR Art. 9)",
    ),
    ("sensitive.health", "health"),
    ("sensitive.biometric", "biometric data"),
    ("sensitive.genetic", "genetic data"),
    ("sensitive.ethnicity", "racial or ethnic origin"),
    ("sensitive.religion", "religious or philosophical beliefs"),
    ("sensitive.political", "political opinions"),
    (
        "sensitive.sexual_orientation",
        "sex life or sexual orientation",
    ),
    ("sensitive.trade_union", "trade-union membership"),
    ("sensitive.criminal", "criminal convictions and offences"),
    ("credentials", "credentials"),
    ("credentials.password", "password"),
    ("credentials.secret", "secret or token"),
];

/// The set of known classes of one policy.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    classes: BTreeMap<String, String>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        Taxonomy {
            classes: BUILT_IN
                .iter()
                .map(|(n, d)| (n.to_string(), d.to_string()))
                .collect(),
        }
    }
}

impl Taxonomy {
    /// Adds a class declared by the policy; its ancestors become known too.
    pub fn declare(&mut self, name: &str, description: &str) {
        let mut prefix = String::new();
        for (i, part) in name.split('.').enumerate() {
            if i > 0 {
                prefix.push('.');
            }
            prefix.push_str(part);
            self.classes.entry(prefix.clone()).or_default();
        }
        self.classes
            .insert(name.to_string(), description.to_string());
    }

    pub fn contains(&self, name: &str) -> bool {
        self.classes.contains_key(name)
    }

    pub fn description(&self, name: &str) -> Option<&str> {
        self.classes.get(name).map(String::as_str)
    }

    /// A close known class name, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        self.classes
            .keys()
            .map(|k| (edit_distance(k, name), k))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, k)| k.as_str())
    }
}

/// Is `class` equal to `ancestor` or below it?
pub fn is_within(class: &str, ancestor: &str) -> bool {
    class == ancestor
        || (class.len() > ancestor.len()
            && class.starts_with(ancestor)
            && class.as_bytes()[ancestor.len()] == b'.')
}

/// Is `name` a syntactically valid class path (lowercase words, digits, `_`, `-`, dots)?
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within() {
        assert!(is_within("pii.contact.email", "pii"));
        assert!(is_within("pii.contact.email", "pii.contact"));
        assert!(is_within("pii", "pii"));
        assert!(!is_within("pii", "pii.contact"));
        assert!(!is_within("piix", "pii"));
        assert!(!is_within("pii.contactx", "pii.contact"));
    }

    #[test]
    fn declared_classes_bring_ancestors() {
        let mut t = Taxonomy::default();
        assert!(!t.contains("acme.score"));
        t.declare("acme.score.value", "a score");
        assert!(t.contains("acme"));
        assert!(t.contains("acme.score"));
        assert!(t.contains("acme.score.value"));
    }

    #[test]
    fn suggestion_for_typo() {
        let t = Taxonomy::default();
        assert_eq!(t.suggest("pii.contact.emial"), Some("pii.contact.email"));
        assert_eq!(t.suggest("zzzzzzzzzzzzz"), None);
    }
}
