//! The next-page URL of an offset-paged collection, as the OneRoster and early-years simulators give it.

use axum::http::{HeaderMap, header};

/// The URL of the page after `offset..offset + limit`: the request's own query with `limit` and `offset` replaced,
/// on the host the client called.
pub(crate) fn next_page_url(
    headers: &HeaderMap,
    path: &str,
    raw_query: Option<&str>,
    offset: usize,
    limit: usize,
) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
        if k != "offset" && k != "limit" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("limit", &limit.to_string());
    query.append_pair("offset", &(offset + limit).to_string());
    format!("http://{host}{path}?{}", query.finish())
}
