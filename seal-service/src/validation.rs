//! Validation data for long-term signatures (B-LT): the certificates of
//! every chain involved (the seal's, the TSA's, the OCSP responders') and
//! the CRLs and OCSP responses that say they were good, taken from Kexin's
//! own repository and responder at signing time.

use cms::revocation::{RevocationInfoChoice, RevocationInfoChoices};
use der::asn1::SetOfVec;
use der::Decode;
use kexin_ca::ocsp::OcspResponder;
use kexin_ca::storage::Database;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

use crate::{der_err, Error};
use kexin_ca::hierarchy::chain_of;

#[derive(Clone, Debug, Default)]
pub struct ValidationData {
    pub certificates: Vec<Certificate>,
    /// DER CRLs.
    pub crls: Vec<Vec<u8>>,
    /// DER OCSP responses (OCSPResponse, as served).
    pub ocsp_responses: Vec<Vec<u8>>,
}

impl ValidationData {
    /// Everything needed to validate `leaves` (and their chains) later.
    pub async fn collect(
        db: &Database,
        ocsp: &OcspResponder,
        leaves: &[Certificate],
    ) -> Result<Self, Error> {
        let records = db.authorities().await?;
        let authorities: Vec<Certificate> = records
            .iter()
            .map(|a| Certificate::from_der(&a.certificate))
            .collect::<Result<_, _>>()
            .map_err(der_err)?;
        let mut data = Self::default();
        let add = |c: &Certificate, data: &mut Self| {
            if !data.certificates.contains(c) {
                data.certificates.push(c.clone());
            }
        };
        for leaf in leaves {
            add(leaf, &mut data);
            let chain = chain_of(leaf, &authorities);
            if let Some(issuer) = chain.first() {
                let request = kexin_ca::ocsp::request_for(leaf, issuer)?;
                let answer = ocsp.respond(&request).await;
                if answer.this_update.is_some() {
                    if let Some(responder) = responder_certificate(&answer.der) {
                        add(&responder, &mut data);
                    }
                    data.ocsp_responses.push(answer.der.to_vec());
                }
            }
            for c in &chain {
                add(c, &mut data);
            }
        }
        for (record, cert) in records.iter().zip(&authorities) {
            if data.certificates.contains(cert) {
                if let Some(crl) = db.crl(&record.name).await? {
                    data.crls.push(crl.der);
                }
            }
        }
        Ok(data)
    }

    /// The CRLs as a SignedData's `crls` field.
    pub fn crl_choices(&self) -> Result<RevocationInfoChoices, Error> {
        let crls = self
            .crls
            .iter()
            .map(|d| CertificateList::from_der(d).map(RevocationInfoChoice::Crl))
            .collect::<Result<Vec<_>, _>>()
            .map_err(der_err)?;
        Ok(RevocationInfoChoices(
            SetOfVec::try_from(crls).map_err(der_err)?,
        ))
    }
}

/// The responder certificate embedded in an OCSP response.
fn responder_certificate(der: &[u8]) -> Option<Certificate> {
    let response = x509_ocsp::OcspResponse::from_der(der).ok()?;
    let basic =
        x509_ocsp::BasicOcspResponse::from_der(response.response_bytes?.response.as_bytes())
            .ok()?;
    basic.certs?.into_iter().next()
}
