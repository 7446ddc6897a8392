//! The registration authority's part of issuance: it decides what may be
//! issued (CSR proof of possession, profile rules, which CA) and hands the
//! decision to the [`Issuer`], which only signs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use x509_cert::Certificate;

use crate::csr::parse_and_verify;
use crate::hierarchy::load_authority;
use crate::issuance::{Issuer, Requester, Signer, SigningAuthority};
use crate::profile::{Profiles, RepositoryUrls, SubjectRequest};
use crate::storage::Database;
use crate::Error;

#[derive(Clone, Debug)]
pub struct Registration {
    db: Database,
    issuer: Issuer,
    profiles: Profiles,
    urls: RepositoryUrls,
    /// CAs already loaded. A CA's row never changes once created, so an
    /// entry never goes stale; CAs created later are found on a miss.
    authorities: Arc<RwLock<HashMap<String, Arc<SigningAuthority>>>>,
}

impl Registration {
    pub fn new(db: Database, issuer: Issuer, profiles: Profiles, urls: RepositoryUrls) -> Self {
        Self {
            db,
            issuer,
            profiles,
            urls,
            authorities: Arc::default(),
        }
    }

    async fn authority(&self, name: &str) -> Result<Arc<SigningAuthority>, Error> {
        let cached = self
            .authorities
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned();
        if let Some(authority) = cached {
            return Ok(authority);
        }
        let authority = Arc::new(load_authority(&self.db, name).await?);
        self.authorities
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned(), authority.clone());
        Ok(authority)
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
        let authority = self.authority(ca.unwrap_or(&profile.issuers[0])).await?;
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
        let authority = self.authority(ca_name).await?;
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
