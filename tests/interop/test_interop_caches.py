"""import-cache: the float caches training codebases write, each built here with the codebase's conventions."""

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.errors import SourceError
from latentstore.interop.caches import import_cache

torch = pytest.importorskip("torch")


def synthetic(n, shape, seed):
    return (np.random.default_rng(seed).standard_t(4, size=(n, *shape)) * 1.7).astype(np.float32)  # not real latents


def assert_store_holds(path, latents, labels, flips=None):
    store = latentstore.open(path)
    q, s = latentstore.quantize(latents)
    codes, scales = store.codes(np.arange(len(latents)))
    assert codes.tobytes() == q.tobytes() and scales.tobytes() == s.tobytes()
    assert store.labels.tolist() == list(labels)
    if flips is not None:
        assert store.codes(np.arange(len(latents)), flip=True)[0].tobytes() == latentstore.quantize(flips)[0].tobytes()
    return store


def test_lightningdit_shards_with_flips_labels_and_stats(tmp_path, capsys):
    from safetensors.torch import save_file

    root = tmp_path / "latents"
    root.mkdir()
    parts = [synthetic(n, (8, 4, 4), seed) for seed, n in enumerate((20, 13, 7))]
    flips = [synthetic(len(p), (8, 4, 4), 10 + k) for k, p in enumerate(parts)]
    labels = [np.arange(len(p)) + 100 * k for k, p in enumerate(parts)]
    for k, (p, f, y) in enumerate(zip(parts, flips, labels)):
        save_file({"latents": torch.from_numpy(p), "latents_flip": torch.from_numpy(f), "labels": torch.from_numpy(y)},
                  str(root / f"latents_rank00_shard{k:03d}.safetensors"))
    torch.save({"mean": torch.zeros(1, 8, 1, 1), "std": torch.ones(1, 8, 1, 1)}, root / "latents_stats.pt")
    assert cli.main(["import-cache", "lightningdit", str(root), str(tmp_path / "s.zarr"), "--chunk-samples", "16",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "found 40 samples of (8, 4, 4) float latents, with flips" in out and "SNR" in out and "load_stats" in out
    store = assert_store_holds(tmp_path / "s.zarr", np.concatenate(parts), np.concatenate(labels), np.concatenate(flips))
    assert store.ids([0, 20]) == ["latents_rank00_shard000.safetensors:0", "latents_rank00_shard001.safetensors:0"]
    assert store.metadata.source["latents_stats"].endswith("latents_stats.pt")
    assert store.metadata.extra["requantization_error"]["snr_db"] > 30


def test_lightningdit_bfloat16_shards(tmp_path):
    from safetensors.torch import save_file

    root = tmp_path / "latents"
    root.mkdir()
    x = torch.from_numpy(synthetic(10, (4, 2, 2), 0)).to(torch.bfloat16)
    save_file({"latents": x, "labels": torch.arange(10)}, str(root / "a.safetensors"))
    import_cache("lightningdit", root, tmp_path / "s.zarr")
    assert_store_holds(tmp_path / "s.zarr", x.float().numpy(), range(10))


def test_fast_dit_features_and_labels_in_its_sorted_order(tmp_path):
    features, label_dir = tmp_path / "imagenet256_features", tmp_path / "imagenet256_labels"
    features.mkdir()
    label_dir.mkdir()
    x = synthetic(12, (4, 4, 4), 1)
    for i in range(12):
        np.save(features / f"{i}.npy", x[i][None])  # (1, C, H, W), as fast-DiT saves them
        np.save(label_dir / f"{i}.npy", np.array([i % 5]))
    report = import_cache("fast-dit", features, tmp_path / "s.zarr")  # labels found beside the features
    order = sorted(f"{i}.npy" for i in range(12))  # the dataset's os.listdir, sorted: 0, 1, 10, 11, 2, ...
    rows = [int(name.split(".")[0]) for name in order]
    store = assert_store_holds(tmp_path / "s.zarr", x[rows], [r % 5 for r in rows])
    assert store.ids([0, 2]) == ["0.npy", "10.npy"] and report.samples == 12


def test_mar_moments_import_the_posterior_mean_and_the_flip(tmp_path):
    root = tmp_path / "cache"
    mean, logvar, flip_mean = synthetic(6, (4, 2, 2), 2), synthetic(6, (4, 2, 2), 3), synthetic(6, (4, 2, 2), 4)
    for i in range(6):
        folder = root / f"n0{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"img{i}.npz", moments=np.concatenate([mean[i], logvar[i]]),
                 moments_flip=np.concatenate([flip_mean[i], logvar[i]]))
    import_cache("mar", root, tmp_path / "s.zarr")
    order = sorted(range(6), key=lambda i: (i % 2, i))
    store = assert_store_holds(tmp_path / "s.zarr", mean[order], [i % 2 for i in order], flip_mean[order])
    assert store.classes == ("n00", "n01")
    import_cache("mar", root, tmp_path / "all.zarr", moments="all")
    assert latentstore.open(tmp_path / "all.zarr").latent_shape == (8, 2, 2)


def test_a_flat_folder_of_latents_has_no_labels(tmp_path):
    x = synthetic(3, (2, 2, 2), 5)
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", x[i])
    import_cache("folder", tmp_path, tmp_path / "out" / "s.zarr")
    assert_store_holds(tmp_path / "out" / "s.zarr", x, [-1, -1, -1])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda d: [np.save(d / "a.npy", np.zeros((2, 2, 2), np.float32)), np.save(d / "b.npy", np.zeros((3, 2, 2), np.float32))],
         "every file must be like the first"),
        (lambda d: np.save(d / "a.npy", np.zeros((2, 2, 2), np.int32)), "expected one float latent"),
        (lambda d: np.savez(d / "a.npz", x=np.zeros((2, 2, 2)), y=np.zeros((2, 2, 2))), "name the latent with --key"),
        (lambda d: (d / "a.npy").write_bytes(b"not numpy"), "cannot read"),
        (lambda d: None, "no .npy or .npz files"),
    ],
)
def test_bad_caches_say_what_is_wrong(tmp_path, build, match):
    cache = tmp_path / "cache"
    cache.mkdir()
    build(cache)
    with pytest.raises(SourceError, match=match):
        import_cache("folder", cache, tmp_path / "s.zarr")


def test_fast_dit_without_its_labels_folder(tmp_path):
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "0.npy", np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(SourceError, match="--labels"):
        import_cache("fast-dit", tmp_path / "feats", tmp_path / "s.zarr")
