"""Road-point cache: the nearest cached point within reach, and answers equal to the layer's."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from commap.map.comm_map import CommMap
from commap.radio.layers.cached import CachedLayer, NearestWithin
from commap.radio.quality import Quality


@pytest.mark.parametrize("seed", range(6))
def test_nearest_within_agrees_with_a_full_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-300.0, 300.0, size=(int(rng.integers(1, 400)), 2))
    points = np.concatenate([points, points[:5]])  # repeated points: ties go to the first
    queries = rng.uniform(-350.0, 350.0, size=(500, 2))
    radius_m = float(rng.choice([5.0, 20.0, 60.0]))
    distance, index = NearestWithin(points, radius_m).query(queries)
    full = np.hypot(*(queries[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    nearest = full.argmin(axis=1)  # the first of equally near points
    within = full[np.arange(len(queries)), nearest] <= radius_m
    assert within.any() and not within.all()
    assert np.array_equal(np.isfinite(distance), within)
    assert np.array_equal(index[within], nearest[within])
    assert np.allclose(distance[within], full[np.arange(len(queries)), nearest][within])
    assert (index[~within] == 0).all()


def test_nearest_within_refuses_a_radius_of_zero() -> None:
    with pytest.raises(ValueError, match="radius_m"):
        NearestWithin(np.zeros((1, 2)), 0.0)


def _fields(q: Quality) -> list[np.ndarray]:
    return [q.rsrp_dbm, q.sinr_db, q.elevation_deg, q.confidence, q.provenance]


def test_cached_layer_answers_as_its_layer_on_and_off_the_roads(andorra: CommMap) -> None:
    entry = next(e for e in andorra.manifest.networks if e.cache)
    layer = andorra.layers[entry.network().id]
    assert isinstance(layer, CachedLayer)
    table = pq.read_table(andorra.directory / str(entry.cache), columns=["lon", "lat"])
    all_lon, all_lat = table["lon"].to_numpy(), table["lat"].to_numpy()
    lon, lat = all_lon[::97], all_lat[::97]
    t_s = np.zeros_like(lon)
    m_per_deg_lon = 111_320.0 * np.cos(np.radians(lat))
    # half a metre east of a cached point: answered from the cache the layer itself filled
    cached = layer.sample(lon + 0.5 / m_per_deg_lon, lat, t_s)
    truth = layer.inner.sample(lon, lat, t_s)
    for got, want in zip(_fields(cached), _fields(truth), strict=True):
        assert np.allclose(got, want, equal_nan=True)
    # 2 km north, where no cached point lies within 20 m: the layer answers for the point itself
    north = lat + 2000.0 / 111_320.0
    gap_m = np.hypot(
        (lon[:, None] - all_lon[None, :]) * m_per_deg_lon[:, None],
        (north[:, None] - all_lat[None, :]) * 111_320.0,
    ).min(axis=1)
    off = gap_m > 25.0
    assert off.sum() > 50
    far = layer.sample(lon[off], north[off], t_s[off])
    live = layer.inner.sample(lon[off], north[off], t_s[off])
    for got, want in zip(_fields(far), _fields(live), strict=True):
        assert np.allclose(got, want, equal_nan=True)


def test_shared_index_answers_again_as_a_fresh_search() -> None:
    rng = np.random.default_rng(11)
    points = rng.uniform(-300.0, 300.0, size=(300, 2))
    shared = NearestWithin.shared(points, 20.0)
    assert NearestWithin.shared(points.copy(), 20.0) is shared  # same points: one index
    assert NearestWithin.shared(points, 25.0) is not shared
    queries = [rng.uniform(-350.0, 350.0, size=(200, 2)) for _ in range(3)]
    fresh = [NearestWithin(points, 20.0).query(q) for q in queries]
    first = [shared.query(q) for q in queries]
    first[0][0][:] = -1.0  # a caller's changes to an answer do not reach the kept one
    first[0][1][:] = -1
    for q, (want_d, want_i) in zip(queries, fresh, strict=True):
        got_d, got_i = shared.query(q)  # answered from the recent queries
        assert np.array_equal(got_d, want_d) and np.array_equal(got_i, want_i)


def test_map_terrestrial_caches_share_one_index(andorra: CommMap) -> None:
    cached = [layer for layer in andorra.layers.values() if isinstance(layer, CachedLayer)]
    assert len(cached) >= 2
    assert len({id(layer._near) for layer in cached}) == 1
