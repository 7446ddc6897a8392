//! The console's two languages. A key missing from the table is a bug
//! that shows the key itself, never an empty label.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The `kexin_lang` cookie wins; otherwise the browser's first choice.
    pub fn negotiate(cookie: Option<&str>, accept_language: Option<&str>) -> Self {
        match cookie {
            Some("zh-CN") => return Self::Zh,
            Some("en") => return Self::En,
            _ => {}
        }
        match accept_language {
            Some(a) if a.trim_start().to_ascii_lowercase().starts_with("zh") => Self::Zh,
            _ => Self::En,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh-CN",
        }
    }

    pub fn t(self, key: &'static str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Self::En => en,
                Self::Zh => zh,
            },
            None => key,
        }
    }
}

const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "Kexin console", "可信 管理控制台"),
    ("dashboard", "Dashboard", "工作台"),
    ("requests", "Requests", "申请"),
    ("new-request", "New request", "新建申请"),
    ("certificates", "Certificates", "证书"),
    ("officers", "Officers", "操作员"),
    ("kmc", "Key recovery", "密钥恢复"),
    ("audit", "Audit log", "审计日志"),
    ("logout", "Sign out", "退出"),
    ("login", "Sign in", "登录"),
    ("login-as", "Sign in with the certificate of", "使用以下证书登录："),
    ("session-expired", "Your session ended. Sign in again to continue.", "会话已结束，请重新登录。"),
    ("pending-you", "Awaiting your decision", "待您审批"),
    ("none", "Nothing here.", "暂无。"),
    ("activity", "Issued and revoked certificates, last 14 days", "近 14 天签发与撤销的证书"),
    ("issued", "issued", "签发"),
    ("revoked", "revoked", "撤销"),
    ("status", "Status", "状态"),
    ("kind", "Kind", "类型"),
    ("subject", "Subject", "主体"),
    ("submitted-by", "Submitted by", "提交人"),
    ("submitted-at", "Submitted", "提交时间"),
    ("approvals", "Approvals", "审批"),
    ("approve", "Approve", "批准"),
    ("reject", "Reject", "驳回"),
    ("decisions", "Decisions", "审批记录"),
    ("evidence", "Identity evidence", "身份核验材料"),
    ("document", "Document", "证件"),
    ("id-number", "ID number", "证件号码"),
    ("note", "Note", "备注"),
    ("show-id", "Show the full ID number (audited)", "显示完整证件号码（将记入审计）"),
    ("profile", "Profile", "证书模板"),
    ("names", "Alternative names (email, DNS, IP; one per line)", "备用名称（邮箱、域名、IP，每行一个）"),
    ("csr", "Certificate request (PEM PKCS#10)", "证书请求（PEM PKCS#10）"),
    ("target", "Certificate serial", "证书序列号"),
    ("reason", "Reason", "原因"),
    ("submit", "Submit", "提交"),
    ("search", "Search", "查询"),
    ("serial", "Serial", "序列号"),
    ("issuer", "Issuer", "签发者"),
    ("validity", "Validity", "有效期"),
    ("not-before", "Not before", "生效时间"),
    ("not-after", "Not after", "失效时间"),
    ("key", "Public key", "公钥"),
    ("extensions", "Extensions", "扩展"),
    ("chain", "Chain", "证书链"),
    ("ocsp", "OCSP answer", "OCSP 应答"),
    ("revoke", "Revoke", "撤销"),
    ("hold", "Hold", "挂起"),
    ("release", "Release hold", "解除挂起"),
    ("outcome", "Outcome", "结果"),
    ("delivery", "Key delivery", "密钥交付"),
    ("delivery-note", "This is shown once. Give the file and the one-time secret to the holder by separate channels.", "仅显示一次。请通过不同渠道将文件与一次性口令交给持有人。"),
    ("one-time-secret", "One-time secret", "一次性口令"),
    ("download", "Download PKCS#12", "下载 PKCS#12 文件"),
    ("name", "Name", "姓名"),
    ("role", "Role", "角色"),
    ("created", "Created", "创建时间"),
    ("add-officer", "Add an officer", "添加操作员"),
    ("recover-key", "Request recovery of an escrowed encryption key", "申请恢复托管的加密密钥"),
    ("recovery-queue", "Key recoveries awaiting KMC officers", "待密钥管理员审批的恢复申请"),
    ("verify-chain", "Verify the chain", "校验日志链"),
    ("chain-intact", "Chain intact", "日志链完整"),
    ("chain-broken", "Chain broken", "日志链已被破坏"),
    ("actor", "Actor", "操作者"),
    ("action", "Action", "操作"),
    ("time", "Time", "时间"),
    ("source", "Source", "来源"),
    ("detail", "Detail", "详情"),
    ("older", "Older", "更早"),
    ("newer", "Newer", "更新"),
    ("error", "Error", "错误"),
    ("forbidden", "Your role may not open this page.", "您的角色无权访问此页面。"),
    ("all", "all", "全部"),
    ("enroll-official", "Enroll an official (signing + encryption certificate)", "公务人员入网（签名证书 + 加密证书）"),
    ("enroll-system", "Enroll a system (TLS)", "系统入网（TLS）"),
    ("seal-certificate", "Seal certificate", "电子印章证书"),
    ("renew", "Renew (same key)", "更新（同一密钥）"),
    ("rekey", "Rekey (new key)", "换发（新密钥）"),
    ("key-recovery", "Key recovery", "密钥恢复"),
    ("submitted", "submitted", "待审批"),
    ("approved", "approved", "已批准"),
    ("rejected", "rejected", "已驳回"),
    ("failed", "failed", "失败"),
    ("hold-status", "on hold", "已挂起"),
    ("seals", "Seals", "电子印章"),
    ("grantees", "May apply it", "授权使用者"),
    ("grant-to", "Grant to (principal name)", "授权给（操作员或系统名）"),
    ("grant", "Grant", "授权"),
    ("verify-title", "Verify a sealed document", "验证电子印章文件"),
    ("verify-intro", "Upload a sealed PDF, or a file with its detached signature (.p7s). Nothing is stored.", "上传加盖电子印章的 PDF，或文件及其分离签名（.p7s）。文件不会被保存。"),
    ("pdf-file", "Sealed PDF", "已盖章的 PDF"),
    ("or", "or", "或"),
    ("signed-file", "Signed file", "被签名的文件"),
    ("signature-file", "Signature (.p7s)", "签名文件（.p7s）"),
    ("verify", "Verify", "验证"),
    ("verdict-valid", "Genuine and unchanged", "文件真实有效，未被篡改"),
    ("verdict-invalid", "Not valid", "验证未通过"),
    ("verdict-indeterminate", "Cannot be confirmed", "无法确认"),
    ("sealed-by", "Sealed by", "盖章单位"),
    ("seal", "Seal", "印章"),
    ("uscc", "Unified social credit code", "统一社会信用代码"),
    ("sealed-at", "Sealed at", "盖章时间"),
    ("time-proven", "proven by a trusted time-stamp", "经可信时间戳证明"),
    ("time-claimed", "as claimed by the signer, not time-stamped", "签名者声明的时间，无时间戳"),
    ("cert-status", "Certificate status now", "证书当前状态"),
    ("later-changes", "Added after sealing", "盖章后追加的内容"),
    ("license-valid", "Genuine license, in force", "证照真实有效"),
    ("license-invalid", "This license is not valid", "证照无效"),
    ("license-type", "License", "证照类型"),
    ("license-number", "Number", "证照编号"),
    ("holder", "Holder", "持证主体"),
    ("authority", "Issuing authority", "发证机关"),
    ("verify-another", "Verify another document", "验证其他文件"),
    ("too-many", "Too many verifications from your address; try again in a minute.", "您的验证次数过多，请一分钟后再试。"),
];
