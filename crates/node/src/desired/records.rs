//! The deployment records a node knows: each verified (signature, key, issuer trust, content)
//! before it counts, and checked against what came before it (no roll-back, no change of
//! owner while a record is live).

use std::collections::BTreeMap;

use nex_proto::deployments::DeploymentSpec;

/// A verified record in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub spec: DeploymentSpec,
    pub issuer: String,
    /// Revision of the key-value entry it came from.
    pub revision: u64,
}

/// Why a record is not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("the record is not a signed deployment: {0}")]
    Signature(#[from] nex_jwt::JwtError),
    #[error("the record is signed for key `{signed}` but stored under `{key}`")]
    WrongKey { signed: String, key: String },
    #[error("the record is not UTF-8 text")]
    NotText,
    #[error("the record is invalid: {0}")]
    Invalid(#[from] nex_proto::deployments::SpecError),
    #[error("issuer {0} is not trusted by this node")]
    Untrusted(String),
    #[error("version {got} is not newer than version {known} this node has seen (a roll-back)")]
    Rollback { got: u64, known: u64 },
    #[error("`{key}` belongs to issuer {owner}; a record of issuer {issuer} may not replace it")]
    Owner {
        key: String,
        owner: String,
        issuer: String,
    },
}

/// Every key's record in effect, and the newest version seen of each (kept after a removal,
/// so an older record put back is still refused while this node runs).
#[derive(Debug, Default)]
pub(crate) struct Records {
    current: BTreeMap<String, Record>,
    seen: BTreeMap<String, (u64, String)>,
}

impl Records {
    /// The records in effect (tombstones included: they mean "run nowhere").
    pub fn current(&self) -> &BTreeMap<String, Record> {
        &self.current
    }

    /// Takes the entry `key` = `value` at `revision` if it verifies. `trusted` says whether an
    /// issuer may deploy on this node. A refused entry changes nothing.
    pub fn put(
        &mut self,
        key: &str,
        value: &[u8],
        revision: u64,
        trusted: impl Fn(&str) -> bool,
    ) -> Result<bool, RecordError> {
        let token = std::str::from_utf8(value).map_err(|_| RecordError::NotText)?;
        let doc = nex_jwt::verify_document::<DeploymentSpec>(token.trim())?;
        if doc.sub != key || doc.data.key() != key {
            return Err(RecordError::WrongKey {
                signed: doc.sub,
                key: key.to_owned(),
            });
        }
        doc.data.check().map_err(RecordError::Invalid)?;
        if !trusted(&doc.iss) {
            return Err(RecordError::Untrusted(doc.iss));
        }
        if let Some((known, _)) = self.seen.get(key) {
            if let Some(cur) = self.current.get(key)
                && cur.spec == doc.data
                && cur.issuer == doc.iss
            {
                // The same record again (a re-delivery, or a copy with a new revision).
                return Ok(false);
            }
            if doc.data.version <= *known {
                return Err(RecordError::Rollback {
                    got: doc.data.version,
                    known: *known,
                });
            }
        }
        if let Some(cur) = self.current.get(key)
            && !cur.spec.undeployed
            && cur.issuer != doc.iss
        {
            return Err(RecordError::Owner {
                key: key.to_owned(),
                owner: cur.issuer.clone(),
                issuer: doc.iss,
            });
        }
        self.seen
            .insert(key.to_owned(), (doc.data.version, doc.iss.clone()));
        self.current.insert(
            key.to_owned(),
            Record {
                spec: doc.data,
                issuer: doc.iss,
                revision,
            },
        );
        Ok(true)
    }

    /// The entry was deleted or purged: its replicas stop.
    pub fn remove(&mut self, key: &str) -> bool {
        self.current.remove(key).is_some()
    }

    /// Keys that should run somewhere (not tombstones).
    pub fn live_keys(&self) -> impl Iterator<Item = &str> {
        self.current
            .iter()
            .filter(|(_, r)| !r.spec.undeployed)
            .map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use nex_proto::control::WorkloadType;
    use nkeys::KeyPair;

    use super::*;

    fn spec(version: u64) -> DeploymentSpec {
        DeploymentSpec {
            version,
            location: "nats://NEXCLIFILES/default/echo".into(),
            hash: "ab".repeat(32),
            trigger_subjects: vec!["echo".into()],
            replicas: 2,
            ..DeploymentSpec::new("default", "echo", WorkloadType::Javascript)
        }
    }

    fn signed(kp: &KeyPair, spec: &DeploymentSpec) -> Vec<u8> {
        nex_jwt::sign_document(kp, &spec.key(), spec)
            .unwrap()
            .into_bytes()
    }

    const KEY: &str = "default.echo";

    #[test]
    fn a_signed_record_is_taken_and_a_newer_one_replaces_it() {
        let kp = KeyPair::new_account();
        let mut r = Records::default();
        assert!(r.put(KEY, &signed(&kp, &spec(1)), 1, |_| true).unwrap());
        assert!(!r.put(KEY, &signed(&kp, &spec(1)), 2, |_| true).unwrap());
        assert!(r.put(KEY, &signed(&kp, &spec(2)), 3, |_| true).unwrap());
        assert_eq!(r.current()[KEY].spec.version, 2);
        assert_eq!(r.live_keys().collect::<Vec<_>>(), [KEY]);
    }

    #[test]
    fn forged_foreign_moved_and_older_records_are_refused_and_change_nothing() {
        let kp = KeyPair::new_account();
        let other = KeyPair::new_account();
        let mut r = Records::default();
        r.put(KEY, &signed(&kp, &spec(2)), 1, |_| true).unwrap();

        let broken = b"eyJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA";
        assert!(matches!(
            r.put(KEY, broken, 2, |_| true),
            Err(RecordError::Signature(_))
        ));
        assert!(matches!(
            r.put(KEY, b"not a jwt at all", 2, |_| true),
            Err(RecordError::Signature(_))
        ));
        assert!(matches!(
            r.put(KEY, &signed(&kp, &spec(1)), 3, |_| true),
            Err(RecordError::Rollback { got: 1, known: 2 })
        ));
        assert!(matches!(
            r.put(KEY, &signed(&other, &spec(3)), 4, |_| true),
            Err(RecordError::Owner { .. })
        ));
        assert!(matches!(
            r.put(KEY, &signed(&kp, &spec(3)), 5, |i| i != kp.public_key()),
            Err(RecordError::Untrusted(_))
        ));
        assert!(matches!(
            r.put("default.other", &signed(&kp, &spec(3)), 6, |_| true),
            Err(RecordError::WrongKey { .. })
        ));
        let mut zero = spec(3);
        zero.replicas = 0;
        assert!(matches!(
            r.put(KEY, &signed(&kp, &zero), 7, |_| true),
            Err(RecordError::Invalid(_))
        ));
        assert_eq!(r.current()[KEY].spec.version, 2);
        assert_eq!(r.current()[KEY].revision, 1);
    }

    #[test]
    fn after_a_signed_removal_another_issuer_may_take_the_name() {
        let kp = KeyPair::new_account();
        let other = KeyPair::new_account();
        let mut r = Records::default();
        r.put(KEY, &signed(&kp, &spec(1)), 1, |_| true).unwrap();
        let mut gone = spec(2);
        gone.undeployed = true;
        r.put(KEY, &signed(&kp, &gone), 2, |_| true).unwrap();
        assert_eq!(r.live_keys().count(), 0);
        assert!(r.put(KEY, &signed(&other, &spec(3)), 3, |_| true).unwrap());
        // A deleted entry's version is remembered.
        assert!(r.remove(KEY));
        assert!(matches!(
            r.put(KEY, &signed(&other, &spec(3)), 4, |_| true),
            Err(RecordError::Rollback { .. })
        ));
    }
}
