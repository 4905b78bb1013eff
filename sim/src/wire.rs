//! The two wire protocols the simulator speaks, and the bits both need.
//!
//! - ECS: AWS JSON 1.1 — `POST /`, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>`,
//!   errors as HTTP 400 `{"__type": "<Code>", "message": "…"}`.
//! - CloudFormation and ELBv2: AWS Query — `POST /` with a form body `Action=<Op>&Version=…`,
//!   answers `<OpResponse><OpResult>…</OpResult><ResponseMetadata>…</ResponseMetadata></OpResponse>`,
//!   errors `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>…`.

use std::collections::HashMap;
use std::fmt::Write as _;

/// An API error, rendered by each protocol in its own way.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The error code the SDKs match on (`ValidationError`, `ServiceNotFoundException`, …).
    pub code: std::borrow::Cow<'static, str>,
    /// The message, worded as AWS words it where we know the wording.
    pub message: String,
    /// HTTP status: 400 for the caller's fault, 500 for ours.
    pub status: u16,
}

impl ApiError {
    /// A 400 error.
    pub fn new(
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }
}

/// The result of one API operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// Form parameters of a Query request.
#[derive(Debug, Default, Clone)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A required parameter, or AWS's ValidationError for a missing one.
    pub fn required(&self, key: &str) -> ApiResult<&str> {
        self.get(key).ok_or_else(|| {
            ApiError::new(
                "ValidationError",
                format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(key)),
            )
        })
    }

    /// A boolean parameter (`true`/`false`), false when absent.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// The members of a list parameter `Key.member.N[.Field]`, in order, each as its own
    /// `Params` with the `Key.member.N.` prefix removed (a scalar member is under key "").
    pub fn members(&self, key: &str) -> Vec<Params> {
        let mut out = Vec::new();
        for n in 1.. {
            let prefix = format!("{key}.member.{n}");
            let mut member = HashMap::new();
            for (k, v) in &self.0 {
                if k == &prefix {
                    member.insert(String::new(), v.clone());
                } else if let Some(rest) = k.strip_prefix(&prefix).and_then(|r| r.strip_prefix('.'))
                {
                    member.insert(rest.to_owned(), v.clone());
                }
            }
            if member.is_empty() {
                break;
            }
            out.push(Params(member));
        }
        out
    }

    /// A list of strings `Key.member.N`.
    pub fn strings(&self, key: &str) -> Vec<String> {
        self.members(key)
            .into_iter()
            .filter_map(|m| m.get("").map(str::to_owned))
            .collect()
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// A small XML writer for Query responses.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    /// An empty document fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>`.
    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        self
    }

    /// `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// `<name>value</name>`, escaped.
    pub fn leaf(&mut self, name: &str, value: impl AsRef<str>) -> &mut Self {
        let _ = write!(self.0, "<{name}>{}</{name}>", escape(value.as_ref()));
        self
    }

    /// `<name>value</name>` when there is a value.
    pub fn opt(&mut self, name: &str, value: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(name, v);
        }
        self
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Escapes text for XML content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps an operation's result XML in `<OpResponse xmlns=…><OpResult>…` with a request id.
pub fn query_response(namespace: &str, action: &str, result: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{namespace}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
}

/// A Query error document.
pub fn query_error(namespace: &str, error: &ApiError, request_id: &str) -> String {
    let kind = if error.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        error.code,
        escape(&error.message)
    )
}

/// Seconds since the epoch as ISO 8601 with milliseconds, as the Query services write times.
pub fn iso8601(epoch: f64) -> String {
    let millis = (epoch * 1000.0).round() as i64;
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_573_869_274.5), "2019-11-16T01:54:34.500Z");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn members_are_read_in_order_with_fields() {
        let p = Params::parse(
            b"Action=X&Parameters.member.2.ParameterKey=B&Parameters.member.1.ParameterKey=A&Parameters.member.1.ParameterValue=1&Names.member.1=n1&Names.member.2=n2",
        );
        let m = p.members("Parameters");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].get("ParameterKey"), Some("A"));
        assert_eq!(m[0].get("ParameterValue"), Some("1"));
        assert_eq!(m[1].get("ParameterKey"), Some("B"));
        assert_eq!(p.strings("Names"), vec!["n1", "n2"]);
    }

    #[test]
    fn xml_escapes_text() {
        let mut x = Xml::new();
        x.open("A").leaf("B", "x < y & \"z\"").close("A");
        assert_eq!(x.finish(), "<A><B>x &lt; y &amp; &quot;z&quot;</B></A>");
    }
}
