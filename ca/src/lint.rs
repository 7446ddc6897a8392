//! RFC 5280 checks run on every TBSCertificate before it is signed.
//! A certificate that fails any of them is never signed.

use std::collections::HashSet;

use const_oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::pkix::constraints::name::NameConstraints;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::TbsCertificate;

use crate::certificate::{key_identifier, unix_seconds};

/// The issuer as the linter needs to know it; `None` for a self-signed certificate.
pub struct IssuerView<'a> {
    pub tbs: &'a TbsCertificate,
}

/// Returns every problem found; empty means the certificate may be signed.
pub fn lint(tbs: &TbsCertificate, issuer: Option<IssuerView<'_>>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut p = |s: String| problems.push(s);

    if tbs.version != x509_cert::Version::V3 {
        p("certificate is not v3".into());
    }
    let serial = tbs.serial_number.as_bytes();
    if serial.len() > 20 {
        p("serial longer than 20 octets".into());
    }
    if serial.len() < 9 {
        p("serial has fewer than 64 random bits".into());
    }
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        p("serial is negative".into());
    }
    let (nb, na) = (
        unix_seconds(&tbs.validity.not_before),
        unix_seconds(&tbs.validity.not_after),
    );
    if nb >= na {
        p("notBefore is not before notAfter".into());
    }
    let self_signed = issuer.is_none();
    if let Some(issuer) = &issuer {
        if tbs.issuer != issuer.tbs.subject {
            p("issuer name differs from the issuer certificate's subject".into());
        }
        let (inb, ina) = (
            unix_seconds(&issuer.tbs.validity.not_before),
            unix_seconds(&issuer.tbs.validity.not_after),
        );
        if nb < inb || na > ina {
            p("validity is not inside the issuer's validity".into());
        }
    } else if tbs.issuer != tbs.subject {
        p("self-signed certificate whose issuer differs from its subject".into());
    }

    let exts = tbs.extensions.as_deref().unwrap_or_default();
    let mut seen = HashSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            p(format!("duplicate extension {}", e.extn_id));
        }
        if e.extn_value.as_bytes().is_empty() {
            p(format!("empty extension {}", e.extn_id));
        }
    }
    let find = |oid| exts.iter().find(|e| e.extn_id == oid);

    let bc = find(BasicConstraints::OID);
    let is_ca = match bc.map(|e| {
        (
            e.critical,
            BasicConstraints::from_der(e.extn_value.as_bytes()),
        )
    }) {
        Some((critical, Ok(bc))) => {
            if bc.ca && !critical {
                p("basicConstraints of a CA is not critical".into());
            }
            if !bc.ca && bc.path_len_constraint.is_some() {
                p("pathLenConstraint on a non-CA certificate".into());
            }
            bc.ca
        }
        Some((_, Err(e))) => {
            p(format!("basicConstraints does not decode: {e}"));
            false
        }
        None => false,
    };

    match find(KeyUsage::OID).map(|e| (e.critical, KeyUsage::from_der(e.extn_value.as_bytes()))) {
        Some((critical, Ok(ku))) => {
            if !critical {
                p("keyUsage is not critical".into());
            }
            if ku.0.is_empty() {
                p("keyUsage has no bits set".into());
            }
            if is_ca && !ku.0.contains(KeyUsages::KeyCertSign) {
                p("CA certificate without keyCertSign".into());
            }
            if !is_ca && ku.0.contains(KeyUsages::KeyCertSign) {
                p("keyCertSign on a certificate that is not a CA".into());
            }
        }
        Some((_, Err(e))) => p(format!("keyUsage does not decode: {e}")),
        None if is_ca => p("CA certificate without keyUsage".into()),
        None => {}
    }
    if is_ca && bc.is_none() {
        p("CA certificate without basicConstraints".into());
    }

    match find(SubjectKeyIdentifier::OID) {
        Some(e) if e.critical => p("subjectKeyIdentifier is critical".into()),
        Some(e) => match SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()) {
            Ok(ski) if ski.0.as_bytes() != key_identifier(&tbs.subject_public_key_info) => {
                p("subjectKeyIdentifier does not match the public key".into())
            }
            Ok(_) => {}
            Err(e) => p(format!("subjectKeyIdentifier does not decode: {e}")),
        },
        None if is_ca => p("CA certificate without subjectKeyIdentifier".into()),
        None => {}
    }

    match find(AuthorityKeyIdentifier::OID) {
        Some(e) if e.critical => p("authorityKeyIdentifier is critical".into()),
        Some(e) => {
            let expected = issuer
                .as_ref()
                .map(|i| key_identifier(&i.tbs.subject_public_key_info))
                .unwrap_or_else(|| key_identifier(&tbs.subject_public_key_info));
            match AuthorityKeyIdentifier::from_der(e.extn_value.as_bytes()) {
                Ok(aki)
                    if aki.key_identifier.as_ref().map(|k| k.as_bytes()) != Some(&expected[..]) =>
                {
                    p("authorityKeyIdentifier does not match the issuer's key".into())
                }
                Ok(_) => {}
                Err(e) => p(format!("authorityKeyIdentifier does not decode: {e}")),
            }
        }
        None if !self_signed => p("authorityKeyIdentifier missing".into()),
        None => {}
    }

    let subject_empty = tbs.subject.0.is_empty();
    match find(SubjectAltName::OID) {
        Some(e) => {
            if subject_empty && !e.critical {
                p("subjectAltName must be critical when the subject is empty".into());
            }
            match SubjectAltName::from_der(e.extn_value.as_bytes()) {
                Ok(san) if san.0.is_empty() => p("subjectAltName is empty".into()),
                Ok(_) => {}
                Err(e) => p(format!("subjectAltName does not decode: {e}")),
            }
        }
        None if subject_empty => p("empty subject without subjectAltName".into()),
        None => {}
    }
    if is_ca && subject_empty {
        p("CA certificate with an empty subject".into());
    }
    if let Some(issuer) = &issuer {
        for name in dns_names(tbs) {
            if let Err(why) = check_name_constraints(issuer.tbs, &name) {
                p(why);
            }
        }
    }
    problems
}

fn dns_names(tbs: &TbsCertificate) -> Vec<String> {
    tbs.extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == SubjectAltName::OID)
        .filter_map(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
        .flat_map(|san| san.0)
        .filter_map(|n| match n {
            GeneralName::DnsName(d) => Some(d.as_str().to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// RFC 5280 §4.2.1.10 for dNSName: a CA does not sign what its own name
/// constraints forbid, so relying parties never have to reject it.
fn check_name_constraints(issuer: &TbsCertificate, name: &str) -> Result<(), String> {
    let Some(ext) = issuer
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == NameConstraints::OID)
    else {
        return Ok(());
    };
    let nc = NameConstraints::from_der(ext.extn_value.as_bytes())
        .map_err(|e| format!("issuer nameConstraints does not decode: {e}"))?;
    let name = name.strip_prefix("*.").unwrap_or(name);
    let within = |base: &str| {
        let base = base.to_ascii_lowercase();
        match base.strip_prefix('.') {
            Some(sub) => name.ends_with(&format!(".{sub}")),
            None => name == base || name.ends_with(&format!(".{base}")),
        }
    };
    let dns = |trees: &Option<Vec<x509_cert::ext::pkix::constraints::name::GeneralSubtree>>| -> Vec<String> {
        trees
            .iter()
            .flatten()
            .filter_map(|t| match &t.base {
                GeneralName::DnsName(d) => Some(d.as_str().to_owned()),
                _ => None,
            })
            .collect()
    };
    if dns(&nc.excluded_subtrees).iter().any(|b| within(b)) {
        return Err(format!(
            "DNS name {name} is excluded by the issuer's name constraints"
        ));
    }
    let permitted = dns(&nc.permitted_subtrees);
    if !permitted.is_empty() && !permitted.iter().any(|b| within(b)) {
        return Err(format!(
            "DNS name {name} is outside the issuer's permitted names"
        ));
    }
    Ok(())
}
