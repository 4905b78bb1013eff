use slipway_tests::{unique, Testbed};

/// The Rust SDK reaches moto: an image pushed to ECR has a digest.
#[tokio::test]
async fn ecr_push_and_describe_returns_a_digest() {
    let bed = Testbed::get();
    let ecr = bed.ecr().await;
    let repo = unique("staging/api");
    let created = ecr
        .create_repository()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.repository().unwrap().repository_name(),
        Some(repo.as_str())
    );

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                   "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
                    "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"}]
    });
    let put = ecr
        .put_image()
        .repository_name(&repo)
        .image_manifest(manifest.to_string())
        .image_tag("3f2a1bc")
        .send()
        .await
        .unwrap();
    let pushed = put
        .image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap()
        .to_owned();
    assert!(pushed.starts_with("sha256:"), "{pushed}");

    let described = ecr
        .describe_images()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    let details = described.image_details();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].image_digest(), Some(pushed.as_str()));
    assert_eq!(details[0].image_tags(), ["3f2a1bc"]);

    // Pushing the same tag again is refused, as TESTBED.md records for moto.
    let again = ecr
        .put_image()
        .repository_name(&repo)
        .image_manifest(manifest.to_string())
        .image_tag("3f2a1bc")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_image_already_exists_exception(), "{again:?}");
}
