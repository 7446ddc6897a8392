//! The registration authority's part of issuance: it decides what may be
//! issued (CSR proof of possession, profile rules, which CA) and hands the
//! decision to the [`Issuer`], which only signs.

use std::time::SystemTime;

use x509_cert::Certificate;

use crate::csr::parse_and_verify;
use crate::hierarchy::load_authority;
use crate::issuance::{Issuer, Requester, Signer};
use crate::profile::{Profiles, RepositoryUrls, SubjectRequest};
use crate::storage::Database;
use crate::Error;

#[derive(Clone, Debug)]
pub struct Registration {
    db: Database,
    issuer: Issuer,
    profiles: Profiles,
    urls: RepositoryUrls,
}

impl Registration {
    pub fn new(db: Database, issuer: Issuer, profiles: Profiles, urls: RepositoryUrls) -> Self {
        Self {
            db,
            issuer,
            profiles,
            urls,
        }
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Issues a certificate for a PKCS#10 CSR (DER or PEM) under `profile`,
    /// signed by `ca` or the profile's default CA.
    pub async fn issue_from_csr(
        &self,
        csr: &[u8],
        profile: &str,
        ca: Option<&str>,
        requester: Requester<'_>,
    ) -> Result<Certificate, Error> {
        let csr = parse_and_verify(csr)?;
        let request = SubjectRequest {
            subject: csr.subject,
            names: csr.requested_names,
            public_key: csr.public_key,
            key_algorithm: csr.key_algorithm,
        };
        self.issue(&request, profile, ca, requester).await
    }

    /// Checks `request` against `profile` and the CA as issuance would,
    /// without issuing: for requests that wait for approval.
    pub async fn check(
        &self,
        request: &SubjectRequest,
        profile: &str,
        ca: Option<&str>,
    ) -> Result<(), Error> {
        let profile = self.profiles.get(profile)?;
        let authority = load_authority(&self.db, ca.unwrap_or(&profile.issuers[0])).await?;
        profile.template(request, &authority, &self.urls, SystemTime::now())?;
        Ok(())
    }

    /// Issues a certificate for a request whose key possession is already
    /// established (a key Kexin generated itself, or a verified CSR).
    pub async fn issue(
        &self,
        request: &SubjectRequest,
        profile: &str,
        ca: Option<&str>,
        requester: Requester<'_>,
    ) -> Result<Certificate, Error> {
        let profile = self.profiles.get(profile)?;
        let ca_name = ca.unwrap_or(&profile.issuers[0]);
        let authority = load_authority(&self.db, ca_name).await?;
        let request = request.clone();
        let template = profile.template(&request, &authority, &self.urls, SystemTime::now())?;
        self.issuer
            .issue(
                Signer::Authority(&authority),
                &profile.name,
                &template,
                requester,
            )
            .await
    }
}
