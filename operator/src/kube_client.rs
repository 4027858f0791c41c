//! The Kubernetes client the operator and `schemaop wait` use: the config
//! kube infers (in-cluster, or KUBECONFIG), with a User-Agent that names
//! schemaop in the API server's logs and audit trail, which otherwise show
//! `unknown` for every request.

use http::header::{HeaderValue, USER_AGENT};
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::util::MapRequestLayer;

/// `schemaop/VERSION`, as kubectl sends `kubectl/VERSION`.
pub const AGENT: &str = concat!("schemaop/", env!("CARGO_PKG_VERSION"));

/// A client from the inferred config, sending [`AGENT`].
pub async fn client() -> kube::Result<Client> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&MapRequestLayer::new(with_agent))
        .build())
}

fn with_agent(mut request: http::Request<Body>) -> http::Request<Body> {
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static(AGENT));
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::Api;
    use tower::ServiceBuilder;

    #[tokio::test]
    async fn every_request_names_schemaop_and_its_version() {
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let client = Client::new(
            ServiceBuilder::new()
                .layer(MapRequestLayer::new(with_agent))
                .service(service),
            "default",
        );

        let request = tokio::spawn(async move { Api::<Namespace>::all(client).get("apps").await });
        let (sent, reply) = handle.next_request().await.expect("a request");
        reply.send_error(std::io::Error::other("not answered in this test"));
        let _ = request.await;

        assert_eq!(sent.headers()[USER_AGENT], AGENT);
        assert!(AGENT.starts_with("schemaop/0."), "{AGENT}");
    }
}
