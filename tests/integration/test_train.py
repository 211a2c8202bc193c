"""The trainer on a real stack: MariaDB source, moto S3, implicit ALS and the hybrid; model choice, evaluation
views, artifacts, fold-in, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from tests.support.fixtures_train import (
    load_npz,
    parse_embeddings_csv,
    publish_training_table,
    training_attributes,
    verify_version,
)

from recsys.cli.batch import train_command
from recsys.contracts import EVALUATION_HTML as REPORT_HTML
from recsys.contracts import EVALUATION_PNG as REPORT_PNG
from recsys.contracts import STRATEGY_FEATURES, STRATEGY_FEATURES_FOLD_IN, STRATEGY_POPULAR_FALLBACK
from recsys.core.aws import client
from recsys.core.errors import PipelineError
from recsys.model.als import AlsFoldIn
from recsys.model.foldin import TRANSFORM_MIPS, TRANSFORM_NONE, confidence, fold_in, to_item_embedding, to_query_vector
from recsys.model.hybrid_foldin import HybridFoldIn
from recsys.pipeline import artifacts, evaluate
from recsys.pipeline.train import (
    ALS_RANKER,
    HYBRID_RANKER,
    PLAIN_COSINE_RANKER,
    TrainParams,
    evaluate_model,
    train_and_publish,
    training_side_info,
)
from recsys.serving.model_cache import load_version


def _version_prefixes(settings) -> set[str]:
    s3 = client("s3", settings)
    listing = s3.list_objects_v2(Bucket=settings.artifacts_bucket, Prefix="models/", Delimiter="/")
    return {p["Prefix"] for p in listing.get("CommonPrefixes", [])}


# -- evaluation -----------------------------------------------------------------------------------


def test_both_models_beat_popularity_and_random_and_stay_below_the_ceiling(train_published):
    ranks = train_published.report.rankers
    for model in (ALS_RANKER, HYBRID_RANKER):
        assert ranks[model].ndcg > 1.5 * ranks["popularity"].ndcg
        assert ranks["planted truth"].ndcg > ranks[model].ndcg
        assert ranks[model].customers == ranks["popularity"].customers > 300
    assert ranks["popularity"].ndcg > ranks["random"].ndcg


def test_the_hybrid_wins_validation_on_planted_v2_and_is_published(train_published):
    """Half of the planted taste follows from country and credit limit: the hybrid sees it, ALS cannot."""
    model = train_published.manifest["model"]
    validation = model["validation"]["known"]["rankers"]
    assert model["kind"] == HYBRID_RANKER == train_published.evaluation.selection.kind
    assert validation[HYBRID_RANKER]["ndcg@10"] > validation[ALS_RANKER]["ndcg@10"]
    assert f"als {validation[ALS_RANKER]['ndcg@10']:.4f}" in model["chosen_by"]
    assert model["serve_features_alone"] is True
    assert "productLine=Classic Cars" in model["item_features"] and "country=France" in model["customer_attributes"]
    assert train_published.manifest["hyperparameters"] == TrainParams().hybrid.as_dict()
    ranks = train_published.report.rankers
    assert ranks[HYBRID_RANKER].ndcg > ranks[ALS_RANKER].ndcg  # on the reported split too


def test_cold_start_views_are_reported(train_published):
    cold = train_published.manifest["cold_start"]
    assert cold["customers"] == 60 and cold["browsed_items"] == 3
    features = cold["features_only"]["rankers"]
    browsed = cold["features_and_browsed"]["rankers"]
    assert features[f"hybrid [{STRATEGY_FEATURES}]"]["ndcg@10"] > 1.2 * features["popularity"]["ndcg@10"]
    assert (
        features["planted truth"]["ndcg@10"]
        > features["attributes-only truth"]["ndcg@10"]
        > features["popularity"]["ndcg@10"]
    )
    assert (
        browsed[f"hybrid [{STRATEGY_FEATURES_FOLD_IN}]"]["ndcg@10"]
        > browsed["als [fold_in]"]["ndcg@10"]
        > browsed["popularity"]["ndcg@10"]
    )
    assert cold["cold_features_vs_popularity"] > 1.2 and 0 < cold["cold_features_vs_attributes_truth"] < 1.5
    html = (train_published.report_dir / REPORT_HTML).read_text()
    assert "Cold start" in html and "attributes-only truth" in html and html.count("data:image/png;base64,") == 2


def test_mips_augment_ranks_better_than_plain_cosine(train_published):
    """Plain cosine throws away the factor norms (popularity); the augmentation keeps ALS's dot-product order."""
    ranks = train_published.report.rankers
    assert train_published.manifest["embedding_transform"] == TRANSFORM_MIPS
    assert ranks[ALS_RANKER].ndcg > ranks[PLAIN_COSINE_RANKER].ndcg


def test_mips_cosine_top_k_equals_dot_product_top_k(train_settings, train_published):
    """What serving's cosine returns on the augmented vectors is what ALS's dot product ranks."""
    npz = load_npz(artifacts.read_artifact(train_settings, train_published.version, "model.npz"))
    users, items = npz["user_factors"], npz["item_factors"]
    rows = np.arange(len(users))
    no_exclusion = evaluate.Interactions(
        npz["user_ids"], npz["item_ids"], np.array([], np.int32), np.array([], np.int32), np.array([], np.float32)
    ).matrix(np.array([]))
    by_cosine = evaluate.top_k(
        evaluate.cosine_scorer(to_query_vector(users, TRANSFORM_MIPS), to_item_embedding(items, TRANSFORM_MIPS)),
        rows,
        no_exclusion,
        10,
    )
    by_dot = evaluate.top_k(lambda r: users[r] @ items.T, rows, no_exclusion, 10)
    assert (by_cosine == by_dot).all(axis=1).mean() > 0.99  # float32 ties aside


def _evaluated(table, params) -> dict:
    data = evaluate.interactions_from_table(table)
    evaluation = evaluate_model(data, params, training_side_info(table, data))
    return evaluation.views.as_dict() | {"model": evaluation.selection.kind}


def test_same_seed_gives_the_same_metrics(train_table):
    first, again = _evaluated(train_table, TrainParams(seed=7)), _evaluated(train_table, TrainParams(seed=7))
    other = _evaluated(train_table, TrainParams(seed=8))
    assert first == again
    for view in ("known", "cold_features"):
        assert (
            first[view]["rankers"][HYBRID_RANKER if view == "known" else f"hybrid [{STRATEGY_FEATURES}]"]
            != other[view]["rankers"][HYBRID_RANKER if view == "known" else f"hybrid [{STRATEGY_FEATURES}]"]
        )


def test_split_does_not_depend_on_row_order(train_table):
    """A snapshot partitioned differently holds the same rows in another order: same split, same metrics."""
    shuffled = train_table.take(np.random.default_rng(3).permutation(train_table.num_rows))
    params = TrainParams(iterations=5, hybrid=replace(TrainParams().hybrid, iterations=4))
    assert _evaluated(shuffled, params) == _evaluated(train_table, params)


def test_holdout_is_per_customer_and_never_takes_everything(train_table):
    data = evaluate.interactions_from_table(train_table)
    test = evaluate.holdout_mask(data, 0.2, seed=1)
    per_customer = np.bincount(data.users, minlength=data.shape[0])
    held = np.bincount(data.users[test], minlength=data.shape[0])
    eligible = per_customer >= 2
    assert (held[eligible] >= 1).all() and (held[eligible] < per_customer[eligible]).all()
    assert (held[~eligible] == 0).all()
    assert abs(test.mean() - 0.2) < 0.02


# -- artifacts ------------------------------------------------------------------------------------


def test_pointer_names_the_new_version_and_checksums_match(train_settings, train_published):
    assert artifacts.serving_version(train_settings) == train_published.version
    manifest = verify_version(train_settings, train_published.version)
    assert set(manifest["files"]) == {
        "item_embeddings.csv",
        "user_embeddings.csv",
        "model.npz",
        "popular_items.json",
        "rated_items.csv",
        REPORT_PNG,
        REPORT_HTML,
    }
    assert manifest["dataset"]["run_id"]
    assert manifest["confidence"]["alpha"] == TrainParams().hybrid.alpha
    assert (
        manifest["metrics"]["rankers"][HYBRID_RANKER]["ndcg@10"] > 0 and manifest["metrics"]["model"] == HYBRID_RANKER
    )


def test_embedding_csvs_load_with_the_manifest_dimension(train_settings, train_published, train_table):
    version, manifest = train_published.version, train_published.manifest
    dim = manifest["embedding_dim"]
    assert dim == manifest["factors"] + 1 == TrainParams().hybrid.factors + 7 + 2 + 1  # + lines, price, size, mips
    item_ids, items = parse_embeddings_csv(artifacts.read_artifact(train_settings, version, "item_embeddings.csv"))
    user_ids, users = parse_embeddings_csv(artifacts.read_artifact(train_settings, version, "user_embeddings.csv"))
    assert items.shape == (manifest["counts"]["products"], dim) and users.shape == (
        manifest["counts"]["customers"],
        dim,
    )
    assert set(item_ids) == set(pc.unique(train_table["productCode"]).to_pylist())
    npz = load_npz(artifacts.read_artifact(train_settings, version, "model.npz"))
    assert list(npz["item_ids"]) == item_ids and [str(u) for u in npz["user_ids"]] == user_ids
    np.testing.assert_allclose(items, to_item_embedding(npz["item_factors"], TRANSFORM_MIPS), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(users, to_query_vector(npz["user_factors"], TRANSFORM_MIPS), rtol=1e-6, atol=1e-7)
    norms = np.linalg.norm(items, axis=1)
    np.testing.assert_allclose(norms, norms.max(), rtol=1e-4)  # every augmented item has norm M
    assert int(npz["factors"]) == manifest["factors"]


def test_popular_items_are_best_first_and_counted(train_settings, train_published, train_table):
    popular = json.loads(artifacts.read_artifact(train_settings, train_published.version, "popular_items.json"))
    scores = [p["score"] for p in popular]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    counts = pc.value_counts(train_table["productCode"]).to_pylist()
    assert popular[0]["product_code"] == max(counts, key=lambda c: c["counts"])["values"]


def test_rated_items_are_every_training_pair(train_settings, train_published, train_table):
    """What ``exclude_rated`` removes in serving: each (customer, product) of the training set, once."""
    body = artifacts.read_artifact(train_settings, train_published.version, "rated_items.csv").decode()
    lines = body.splitlines()
    assert lines[0] == "user_id,item_id"
    pairs = [tuple(line.split(",")) for line in lines[1:]]
    expected = {
        (str(c), p)
        for c, p in zip(train_table["customerNumber"].to_pylist(), train_table["productCode"].to_pylist(), strict=True)
    }
    assert len(pairs) == len(set(pairs)) == len(expected) and set(pairs) == expected


def test_report_written_locally_and_uploaded(train_settings, train_published):
    html = (train_published.report_dir / REPORT_HTML).read_text()
    assert "data:image/png;base64," in html and "planted truth" in html and "NDCG@10" in html
    png = artifacts.read_artifact(train_settings, train_published.version, REPORT_PNG)
    assert png.startswith(b"\x89PNG") and png == (train_published.report_dir / REPORT_PNG).read_bytes()


# -- fold-in ---------------------------------------------------------------------------------------


def test_the_lambdas_fold_in_of_a_known_history_is_the_trained_vector(train_settings, train_published, train_table):
    """The hybrid's last sweep solves every customer exactly as the Lambda folds a new one in."""
    model = load_version(client("s3", train_settings), train_settings.artifacts_bucket, train_published.version)
    assert isinstance(model.fold_in, HybridFoldIn)
    assert model.fold_in.precision.shape == (model.item_factors.shape[1],)
    prior, precision = model.fold_in.prior, model.fold_in.precision
    npz = load_npz(artifacts.read_artifact(train_settings, train_published.version, "model.npz"))
    data = evaluate.interactions_from_table(train_table)
    attributes = training_attributes(train_table)
    assert list(data.user_ids) == list(npz["user_ids"])
    cosines = []
    for row in range(0, data.shape[0], 7):
        mine = data.users == row
        country, credit = attributes[int(data.user_ids[row])]
        a = prior.encoder.encode([country], [credit])[0]
        folded = fold_in(
            model.item_factors,
            data.items[mine],
            confidence(data.ratings[mine], model.alpha, model.rating_offset),
            precision,
            prior.mean(a),
        )
        trained = npz["user_factors"][row]
        cosines.append(folded @ trained / (np.linalg.norm(folded) * np.linalg.norm(trained)))
    assert min(cosines) > 0.9999


def test_a_new_customer_with_attributes_gets_the_features_vector(train_settings, train_published):
    model = load_version(client("s3", train_settings), train_settings.artifacts_bucket, train_published.version)
    strategy, query = model.cold_start_query([], [], country="France", credit_limit=90_000.0)
    assert strategy == STRATEGY_FEATURES
    prior = model.fold_in.prior
    expected = prior.mean(prior.encoder.encode(["France"], [90_000.0])[0])
    np.testing.assert_allclose(query, to_query_vector(expected, TRANSFORM_MIPS), rtol=1e-5)
    strategy, _ = model.cold_start_query([str(model.popular[0].product_code)], [1.0], country="France")
    assert strategy == STRATEGY_FEATURES_FOLD_IN


@pytest.fixture(scope="module")
def train_published_als(train_settings, train_dataset, tmp_path_factory):
    """``recsys train --model als``: the ALS baseline published (no attribute prior)."""
    return train_and_publish(train_settings, TrainParams(model=ALS_RANKER), tmp_path_factory.mktemp("train-als"))


def test_an_als_model_has_no_prior_and_folds_in_as_before(train_settings, train_published_als, train_table):
    """Measured: median cosine ≈ 1.0, minimum > 0.97 (training uses 3 CG steps, fold-in solves exactly)."""
    manifest = train_published_als.manifest
    assert manifest["model"]["kind"] == ALS_RANKER and manifest["hyperparameters"] == TrainParams().hyperparameters()
    assert manifest["embedding_dim"] == TrainParams.factors + 1 and "validation" not in manifest["model"]
    npz = load_npz(artifacts.read_artifact(train_settings, train_published_als.version, "model.npz"))
    assert "prior_map" not in npz and float(npz["regularization"]) == TrainParams.regularization
    model = load_version(client("s3", train_settings), train_settings.artifacts_bucket, train_published_als.version)
    assert model.fold_in == AlsFoldIn(TrainParams.regularization)
    assert model.cold_start_query([], [], country="France", credit_limit=1.0) == (STRATEGY_POPULAR_FALLBACK, None)
    data = evaluate.interactions_from_table(train_table)
    cosines = []
    for row in range(0, data.shape[0], 7):
        mine = data.users == row
        c = confidence(data.ratings[mine], float(npz["alpha"]), float(npz["rating_offset"]))
        folded = fold_in(npz["item_factors"], data.items[mine], c, float(npz["regularization"]))
        trained = npz["user_factors"][row]
        cosines.append(folded @ trained / (np.linalg.norm(folded) * np.linalg.norm(trained)))
    assert np.median(cosines) > 0.99 and min(cosines) > 0.9


def test_fold_in_equals_implicits_recalculate_user(train_settings, train_published_als, train_table):
    from implicit.cpu.als import AlternatingLeastSquares

    npz = load_npz(artifacts.read_artifact(train_settings, train_published_als.version, "model.npz"))
    data = evaluate.interactions_from_table(train_table)
    params = TrainParams()
    matrix = data.matrix(confidence(data.ratings, params.alpha, params.rating_offset))
    model = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization, alpha=1.0)
    model.item_factors, model.user_factors = npz["item_factors"], npz["user_factors"]
    for row in (0, 5, 123):
        expected = model.recalculate_user(row, matrix[row])
        mine = data.users == row
        got = fold_in(npz["item_factors"], data.items[mine], matrix[row].data, params.regularization)
        np.testing.assert_allclose(got, np.ravel(expected), rtol=1e-3, atol=1e-4)


# -- failures and bad input -------------------------------------------------------------------------


def test_failed_publish_leaves_the_previous_version_serving(train_settings, train_published, monkeypatch, tmp_path):
    before = artifacts.serving_version(train_settings)
    prefixes = _version_prefixes(train_settings)
    real_put, written = artifacts._put_object, []

    def put_then_fail_on_manifest(s3, bucket, key, body, content_type):
        if key.endswith("/manifest.json"):
            raise ConnectionError("injected: connection reset while writing the manifest")
        real_put(s3, bucket, key, body, content_type)
        written.append(key)

    monkeypatch.setattr(artifacts, "_put_object", put_then_fail_on_manifest)
    with pytest.raises(PipelineError, match=f"manifest.json.*serving still points to {before}"):
        train_and_publish(train_settings, TrainParams(), tmp_path)
    assert len(written) == 7  # every data file (rated_items.csv too) had been written before the failure
    assert artifacts.serving_version(train_settings) == before
    assert _version_prefixes(train_settings) == prefixes  # the partial version was removed


def _pointer_unchanged_after(settings, artifacts_settings, tmp_path, match: str) -> None:
    before = artifacts.serving_version(artifacts_settings)
    with pytest.raises(PipelineError, match=match):
        train_and_publish(settings, TrainParams(), tmp_path)
    assert artifacts.serving_version(artifacts_settings) == before


def test_no_published_dataset_is_refused(train_bad_settings, train_published, tmp_path):
    _pointer_unchanged_after(train_bad_settings, train_bad_settings, tmp_path, "no published training set")


def test_empty_dataset_is_refused(train_bad_settings, train_table, train_published, tmp_path):
    publish_training_table(train_bad_settings, train_table.slice(0, 0))
    _pointer_unchanged_after(train_bad_settings, train_bad_settings, tmp_path, "is empty")


def test_missing_columns_are_named(train_bad_settings, train_table, train_published, tmp_path):
    publish_training_table(train_bad_settings, train_table.drop_columns(["productRating"]))
    _pointer_unchanged_after(train_bad_settings, train_bad_settings, tmp_path, "lacks column.*productRating")


def test_a_single_customer_is_refused(train_bad_settings, train_table, train_published, tmp_path):
    first = train_table["customerNumber"][0]
    publish_training_table(train_bad_settings, train_table.filter(pc.equal(train_table["customerNumber"], first)))
    _pointer_unchanged_after(train_bad_settings, train_bad_settings, tmp_path, "1 customer")


def test_ratings_out_of_range_are_refused(train_bad_settings, train_table, train_published, tmp_path):
    bad = train_table.set_column(
        train_table.schema.get_field_index("productRating"),
        "productRating",
        pa.array(np.full(train_table.num_rows, 9, np.int8)),
    )
    publish_training_table(train_bad_settings, bad)
    _pointer_unchanged_after(train_bad_settings, train_bad_settings, tmp_path, r"outside 1\.\.5")


# -- the command ------------------------------------------------------------------------------------


def _env_for(settings) -> dict[str, str]:
    return {
        "MYSQL_DATABASE": settings.mysql_database,
        "RECSYS_DATALAKE_BUCKET": settings.datalake_bucket,
        "RECSYS_ARTIFACTS_BUCKET": settings.artifacts_bucket,
    }


def test_train_command_publishes_and_prints_the_table(train_settings, train_dataset, monkeypatch, tmp_path):
    for name, value in _env_for(train_settings).items():
        monkeypatch.setenv(name, value)
    before = artifacts.serving_version(train_settings)
    result = CliRunner().invoke(
        train_command,
        [
            "--model",
            "als",
            "--factors",
            "8",
            "--iterations",
            "5",
            "--embedding-transform",
            "none",
            "--reports-dir",
            str(tmp_path),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "planted truth" in result.output and "NDCG@10" in result.output and "report: " in result.output
    assert "model: als (--model als)" in result.output and "cold start (a): attributes only" in result.output
    version = artifacts.serving_version(train_settings)
    assert version != before and f"published model {version}" in result.output
    manifest = artifacts.read_manifest(train_settings, version)
    assert manifest["embedding_transform"] == TRANSFORM_NONE and manifest["embedding_dim"] == 8
    assert (tmp_path / "train" / version / REPORT_HTML).exists()


def test_cli_prints_bad_input_as_one_line(train_bad_settings):
    env = {**os.environ, **_env_for(train_bad_settings)}
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "recsys"), "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no published training set")
    assert "Traceback" not in proc.stderr
