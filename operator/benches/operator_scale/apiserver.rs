//! A small in-memory Kubernetes API server, enough for the operator to run
//! against it as it runs against a real one: lists, watches that carry
//! every later change, gets, creates, patches of objects and of their status
//! subresource, and deletes. Every request is counted by verb and resource,
//! which is what the benchmark reports.
//!
//! It is not a conformance fake: patches are merged as a sole field manager
//! sees them (an apply replaces what it sends, a strategic merge merges lists
//! of conditions by type), there is no admission, and watches never expire.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// Where an object lives: its collection (`group/version/resource`, the core
/// group empty), its namespace and its name.
type Key = (String, String, String);

/// One change, as a watch sends it.
#[derive(Clone)]
struct Change {
    resource_version: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Arc<Value>,
}

#[derive(Default)]
struct Objects {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Change>,
}

pub struct ApiServer {
    objects: Mutex<Objects>,
    changes: broadcast::Sender<Change>,
    requests: Mutex<BTreeMap<String, u64>>,
    agents: Mutex<BTreeMap<String, u64>>,
}

/// A collection path: `v1/pods`, `apps/v1/deployments`.
pub fn collection(api_version: &str, resource: &str) -> String {
    format!("{api_version}/{resource}")
}

impl ApiServer {
    pub fn new() -> Arc<ApiServer> {
        Arc::new(ApiServer {
            objects: Mutex::default(),
            changes: broadcast::channel(1 << 16).0,
            requests: Mutex::default(),
            agents: Mutex::default(),
        })
    }

    /// Serves on a free port of 127.0.0.1 until the process ends.
    pub async fn serve(self: &Arc<ApiServer>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("its address");
        let app = Router::new().fallback(handle).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Adds an object as if a client had created it; no request is counted.
    pub fn insert(&self, collection: &str, mut object: Value) {
        let (namespace, name) = identity(&object);
        let mut objects = self.objects.lock().unwrap();
        objects.resource_version += 1;
        let rv = objects.resource_version;
        stamp_new(&mut object, rv, &namespace);
        objects
            .objects
            .insert((collection.into(), namespace, name), object);
    }

    /// Every object of a collection, as stored now.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let objects = self.objects.lock().unwrap();
        objects
            .objects
            .iter()
            .filter(|((c, _, _), _)| c == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// How many objects of a collection there are, and whether `test` holds
    /// for all of them; read in place, as the benchmark asks ten times a
    /// second and must not take the operator's CPU copying objects.
    pub fn all(&self, collection: &str, test: impl Fn(&Value) -> bool) -> (usize, bool) {
        let objects = self.objects.lock().unwrap();
        let mut count = 0;
        let mut holds = true;
        for ((c, _, _), v) in &objects.objects {
            if c == collection {
                count += 1;
                holds = holds && test(v);
            }
        }
        (count, holds)
    }

    /// Requests so far, by `verb resource[/subresource]`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.requests.lock().unwrap().clone()
    }

    /// User-Agent headers seen, with their counts.
    pub fn agents(&self) -> BTreeMap<String, u64> {
        self.agents.lock().unwrap().clone()
    }

    fn count(&self, what: String, agent: Option<&str>) {
        *self.requests.lock().unwrap().entry(what).or_default() += 1;
        *self
            .agents
            .lock()
            .unwrap()
            .entry(agent.unwrap_or("none").to_owned())
            .or_default() += 1;
    }

    /// Stores `object` under `key` and tells the watches.
    fn write(
        &self,
        objects: &mut Objects,
        key: Key,
        kind: &'static str,
        mut object: Value,
    ) -> Value {
        objects.resource_version += 1;
        let rv = objects.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change {
            resource_version: rv,
            collection: key.0.clone(),
            namespace: key.1.clone(),
            kind,
            object: Arc::new(object.clone()),
        };
        if kind == "DELETED" {
            objects.objects.remove(&key);
        } else {
            objects.objects.insert(key, object.clone());
        }
        objects.log.push(change.clone());
        let _ = self.changes.send(change);
        object
    }
}

/// Where a request points.
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some((*namespace).to_owned()), rest)
        }
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        collection: collection(&api_version, resource),
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_owned(), v.into_owned())
        })
        .collect()
}

async fn handle(
    State(server): State<Arc<ApiServer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    if uri.path() == "/version" {
        server.count("get version".into(), agent);
        return json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-bench",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
            }),
        );
    }
    let Some(target) = parse(uri.path()) else {
        return status(404, "NotFound", format!("no route {}", uri.path()));
    };
    let params = query(&uri);
    let resource = target
        .collection
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let what = match &target.subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource,
    };
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");

    match (&method, &target.name) {
        (&Method::GET, None) if watch => {
            server.count(format!("watch {what}"), agent);
            watch_response(&server, &target, &params, metadata_only)
        }
        (&Method::GET, None) => {
            server.count(format!("list {what}"), agent);
            list_response(&server, &target, &params, metadata_only)
        }
        (&Method::GET, Some(name)) => {
            server.count(format!("get {what}"), agent);
            let objects = server.objects.lock().unwrap();
            match objects.objects.get(&key(&target, name)) {
                Some(object) => json_response(StatusCode::OK, object),
                None => not_found(&target, name),
            }
        }
        (&Method::POST, None) => {
            server.count(format!("create {what}"), agent);
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "not JSON".into());
            };
            let namespace = target.namespace.clone().unwrap_or_default();
            let name = object["metadata"]["name"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let prefix = object["metadata"]["generateName"].as_str().unwrap_or("x-");
                    format!(
                        "{prefix}{}",
                        server.objects.lock().unwrap().resource_version
                    )
                });
            object["metadata"]["name"] = json!(name);
            let key = (target.collection.clone(), namespace.clone(), name.clone());
            let mut objects = server.objects.lock().unwrap();
            if objects.objects.contains_key(&key) {
                return status(409, "AlreadyExists", format!("{name} already exists"));
            }
            let rv = objects.resource_version + 1;
            stamp_new(&mut object, rv, &namespace);
            let stored = server.write(&mut objects, key, "ADDED", object);
            json_response(StatusCode::CREATED, &stored)
        }
        (&Method::PATCH, Some(name)) | (&Method::PUT, Some(name)) => {
            let verb = if method == Method::PUT {
                "update"
            } else {
                "patch"
            };
            server.count(format!("{verb} {what}"), agent);
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "not JSON".into());
            };
            let key = key(&target, name);
            let mut objects = server.objects.lock().unwrap();
            let apply = content_type.contains("apply-patch");
            let Some(mut object) = objects.objects.get(&key).cloned().or_else(|| {
                // Server-side apply creates what is missing.
                apply.then(|| {
                    let mut object = patch.clone();
                    stamp_new(&mut object, 0, &key.1);
                    object
                })
            }) else {
                return not_found(&target, name);
            };
            let on_status = target.subresource.as_deref() == Some("status");
            if method == Method::PUT {
                let metadata = object["metadata"].clone();
                object = patch;
                object["metadata"] = metadata;
            } else if apply && on_status {
                // The operator is the status' one manager and sends all of it.
                object["status"] = patch["status"].clone();
            } else {
                let strategic = content_type.contains("strategic");
                let patch = if on_status {
                    json!({ "status": patch["status"].clone() })
                } else {
                    patch
                };
                merge(&mut object, &patch, strategic);
            }
            let stored = server.write(&mut objects, key, "MODIFIED", object);
            json_response(StatusCode::OK, &stored)
        }
        (&Method::DELETE, Some(name)) => {
            server.count(format!("delete {what}"), agent);
            let key = key(&target, name);
            let mut objects = server.objects.lock().unwrap();
            match objects.objects.get(&key).cloned() {
                Some(object) => {
                    let stored = server.write(&mut objects, key, "DELETED", object);
                    json_response(StatusCode::OK, &stored)
                }
                None => not_found(&target, name),
            }
        }
        _ => {
            server.count(format!("{method} {what}"), agent);
            status(405, "MethodNotAllowed", format!("{method} {}", uri.path()))
        }
    }
}

fn key(target: &Target, name: &str) -> Key {
    (
        target.collection.clone(),
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    )
}

fn identity(object: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn stamp_new(object: &mut Value, rv: u64, namespace: &str) {
    let metadata = &mut object["metadata"];
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    metadata["resourceVersion"] = json!(rv.to_string());
    if metadata["uid"].is_null() {
        metadata["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
    }
    if metadata["creationTimestamp"].is_null() {
        metadata["creationTimestamp"] = json!("2026-12-05T00:00:00Z");
    }
    if metadata["generation"].is_null() {
        metadata["generation"] = json!(1);
    }
}

/// Whether an object's labels match a `labelSelector` of `key`, `key=value`,
/// `key==value` and `key!=value` terms.
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else {
            !labels[term].is_null()
        }
    })
}

fn in_scope(target: &Target, collection: &str, namespace: &str) -> bool {
    collection == target.collection && target.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

fn shown(object: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": object["metadata"].clone(),
        })
    } else {
        object.clone()
    }
}

fn list_response(
    server: &ApiServer,
    target: &Target,
    params: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response {
    let objects = server.objects.lock().unwrap();
    // Pages as the API server pages a list from etcd; a list at
    // resourceVersion 0 comes from its watch cache, whole.
    let from_cache = params.get("resourceVersion").is_some_and(|rv| rv == "0");
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0 && !from_cache)
        .unwrap_or(usize::MAX);
    let skip: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let matching = objects.objects.iter().filter(|((c, ns, _), v)| {
        in_scope(target, c, ns) && selected(v, params.get("labelSelector"))
    });
    let page: Vec<Value> = matching
        .skip(skip)
        .take(limit.saturating_add(1))
        .map(|(_, v)| shown(v, metadata_only))
        .collect();
    let more = page.len() > limit;
    let items = &page[..page.len().min(limit)];
    let kind = if metadata_only {
        "PartialObjectMetadataList"
    } else {
        "List"
    };
    let mut metadata = json!({ "resourceVersion": objects.resource_version.to_string() });
    if more {
        metadata["continue"] = json!((skip + limit).to_string());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": "v1",
            "kind": kind,
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn watch_response(
    server: &ApiServer,
    target: &Target,
    params: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response {
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let selector = params.get("labelSelector").cloned();
    let target = Target {
        collection: target.collection.clone(),
        namespace: target.namespace.clone(),
        name: None,
        subresource: None,
    };
    // The backlog and the subscription under one lock: no change between.
    let (backlog, receiver) = {
        let objects = server.objects.lock().unwrap();
        let backlog: Vec<Change> = objects
            .log
            .iter()
            .filter(|c| c.resource_version > since)
            .cloned()
            .collect();
        (backlog, server.changes.subscribe())
    };
    let later = futures::stream::unfold(receiver, |mut receiver| async move {
        // A watcher that lags this far re-lists, as after a 410 Gone.
        receiver.recv().await.ok().map(|change| (change, receiver))
    });
    let frames = futures::stream::iter(backlog)
        .chain(later)
        .filter(move |change| {
            let keep = in_scope(&target, &change.collection, &change.namespace)
                && selected(&change.object, selector.as_ref());
            async move { keep }
        })
        .map(move |change| {
            let mut line = serde_json::to_vec(&json!({
                "type": change.kind,
                "object": shown(&change.object, metadata_only),
            }))
            .expect("JSON");
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(frames))
        .expect("a response")
}

/// RFC 7386 merge, or a strategic merge that merges lists of objects with a
/// `type` (conditions) by it, which is all the operator's patches need.
fn merge(object: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(patch) = patch else {
        *object = patch.clone();
        return;
    };
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let target = object.as_object_mut().expect("an object");
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Array(items) if strategic && items.iter().all(|i| !i["type"].is_null()) => {
                let list = target.entry(k.clone()).or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let list = list.as_array_mut().expect("an array");
                for item in items {
                    match list.iter_mut().find(|e| e["type"] == item["type"]) {
                        Some(existing) => merge(existing, item, true),
                        None => list.push(item.clone()),
                    }
                }
            }
            _ => merge(target.entry(k.clone()).or_insert(Value::Null), v, strategic),
        }
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).expect("JSON"),
    )
        .into_response()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    json_response(
        StatusCode::from_u16(code).expect("a status"),
        &json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }),
    )
}

fn not_found(target: &Target, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", target.collection),
    )
}
