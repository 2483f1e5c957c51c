//! How a result the owner is shown is written in JSON: the value itself, or `{"error": "…"}` when it could not
//! be had. (Serde's default, `{"Ok": …}` / `{"Err": …}`, is a Rust spelling and not part of the CLI's JSON.)

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serialize `Ok(v)` as `v` and `Err(e)` as `{"error": e}`.
pub fn serialize<T: Serialize, S: Serializer>(
    r: &Result<T, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match r {
        Ok(v) => v.serialize(s),
        Err(e) => Failed { error: e }.serialize(s),
    }
}

/// Read what [`serialize`] wrote: an object holding only `error` is the error, anything else the value.
pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Result<T, String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if let Some(e) = v
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("error"))
        .and_then(|e| e.as_str())
    {
        return Ok(Err(e.to_string()));
    }
    T::deserialize(v).map(Ok).map_err(serde::de::Error::custom)
}

#[derive(Serialize)]
struct Failed<'a> {
    error: &'a str,
}

#[cfg(test)]
mod tests {
    use duo_engine::{Answer, Value};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Shown {
        #[serde(with = "super")]
        value: Result<Answer, String>,
    }

    #[test]
    fn a_value_or_an_error_without_rust_wrappers() {
        let ok = Shown {
            value: Ok(Answer::Scalar {
                value: Value::Int(3),
            }),
        };
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            text,
            r#"{"value":{"kind":"scalar","value":{"type":"int","value":3}}}"#
        );
        assert_eq!(serde_json::from_str::<Shown>(&text).unwrap(), ok);
        let err = Shown {
            value: Err("dataset `rent` is not loaded".into()),
        };
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(
            text,
            r#"{"value":{"error":"dataset `rent` is not loaded"}}"#
        );
        assert_eq!(serde_json::from_str::<Shown>(&text).unwrap(), err);
    }
}
