"""The drops benchmark: every policy on identical truth, on a map's routes, over seeds.

:func:`evaluate_map` is the whole ``commap evaluate`` command as a library function:

1. routes: the given ones, else :func:`default_routes` (a fixed list per known map, else routes
   between the far corners of the road graph); each is cut into the map's corridor and sampled
   (the planner's map, :meth:`commap.map.comm_map.CommMap.quality`);
2. the ``commap`` plan is made once per route on the planner's map
   (:class:`commap.plan.problem.HandoverProblem` with the evaluation's link model, objective,
   application class and a minimum dwell against ping-pong);
3. per seed and route a truth field (:func:`commap.sim.truth.make_truth`, seeded with
   ``(seed, route index)``), the oracle plan on it, and one drive per policy; the A3 sweep runs
   on the same truth and ``a3_tuned`` takes, per route, the sweep entry with the fewest mean
   avoidable drops (then fewest handovers);
4. per seed and route the same truth second by second on every vehicle set-up of
   ``config.vehicles``, with every map-free baseline of the real drives
   (:mod:`commap.sim.synthetic`): the rows of ``summary.csv`` and the bar per set-up;
5. :func:`commap.sim.metrics.aggregate` (the simulator's 3GPP counts), the targets
   (:func:`check_bar`) and the report folder (:mod:`commap.out.evaluation_report`).

``commap`` and ``oracle`` execute their plans the way commap does in a vehicle: in a closed loop
(:class:`commap.sim.policies.FallbackPlanPolicy`; the execution rules travel with the plan).
Besides the six policies of :data:`commap.sim.policies.POLICY_NAMES` the default evaluation drives ``commap_open_loop`` and
``oracle_open_loop``: the same two plans switched at the planned points only. The open-loop plan
cannot react to map errors (missing sites, unmapped obstructions, bias) that the oracle sees; the
pair shows what acting on measurements recovers.

The planner and the simulator share one :class:`commap.radio.link.LinkModel`: the interruption of
every kind of switch is the same number in the plan cost and in the drive.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from commap.arrays import FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor, Route
from commap.networks import Network, NetworkCatalogue
from commap.plan import defaults
from commap.progress import ProgressArg, as_progress
from commap.radio.link import LinkModel, Objective, app_profile
from commap.radio.quality import QualityMatrix
from commap.radio.vehicle import VehicleSetup, vehicle_setup
from commap.sim.a3 import A3Params
from commap.sim.drive import DriveLog, Measurements, Policy, SimConfig, simulate
from commap.sim.metrics import aggregate, outage_durations_s, run_metrics
from commap.sim.policies import (
    A3_DEFAULT,
    A3_SWEEP,
    EXTRA_POLICY_NAMES,
    POLICY_NAMES,
    A3Policy,
    FallbackPlanPolicy,
    GreedyPolicy,
    PlanPolicy,
    StickyPolicy,
    map_free_plan,
)
from commap.sim.replay import (
    A3_GRID,
    A3Calibration,
    CorkReplay,
    RealTraces,
    StarlinkBridges,
    calibrate_cork,
    run_replays,
)
from commap.sim.synthetic import SYNTHETIC_SETUPS, SecondsTotals, judge_truth
from commap.sim.truth import TruthConfig, TruthField, make_truth

if TYPE_CHECKING:
    from commap.map.comm_map import CommMap

__all__ = [
    "DEFAULT_ROUTES",
    "EvaluationConfig",
    "EvaluationResult",
    "Scenario",
    "StripData",
    "check_bar",
    "default_routes",
    "evaluate_map",
    "evaluate_scenarios",
    "plan_assignment",
    "prepare_scenarios",
]

log = logging.getLogger(__name__)


# Evaluation routes per map: (name, origin (lon, lat), destination (lon, lat)).
DEFAULT_ROUTES: dict[str, tuple[tuple[str, tuple[float, float], tuple[float, float]], ...]] = {
    # The ends are road junctions (OSM nodes) near the places named: the routes, and so the
    # evaluation's figures, do not move when snapping changes.
    "andorra": (
        # Spanish border -> Andorra la Vella -> Envalira pass -> Pas de la Casa (French border):
        # both roaming operators, the national one, mountain terrain.
        ("es_border-pas_de_la_casa", (1.4765772, 42.4384034), (1.7338324, 42.5422862)),
        # Andorra la Vella -> dos Valires tunnel -> Ordino valley -> El Serrat: a 2.9 km tunnel,
        # 40 bridges, a narrow northern valley.
        ("la_vella-el_serrat", (1.5218558, 42.5062575), (1.534685, 42.6227492)),
        # Encamp -> dos Valires tunnel -> La Massana -> Arinsal.
        ("encamp-arinsal", (1.5793419, 42.5347253), (1.4864112, 42.5709352)),
    ),
}


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """Everything an evaluation uses besides the map, the routes and the seeds.

    Examples
    --------
    >>> EvaluationConfig().app, EvaluationConfig().min_dwell_s
    ('telemetry', 5.0)
    """

    truth: TruthConfig = field(default_factory=TruthConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    link: LinkModel = field(default_factory=LinkModel)
    objective: Objective = field(default_factory=Objective)
    app: str = defaults.APP
    # the plans' minimum dwell and the dwell of their closed-loop execution (no ping-pong)
    min_dwell_s: float = defaults.EXECUTION_MIN_DWELL_S
    policies: tuple[str, ...] = POLICY_NAMES + EXTRA_POLICY_NAMES
    a3_sweep: tuple[A3Params, ...] = A3_SWEEP
    return_home_s: float = 360.0
    strip_seed: int = 0  # seed drawn in the strip chart
    real_traces: RealTraces | None = None  # replay real traces too
    # A3 calibrated on some Cork drives and scored on the others (with real_traces; () skips)
    a3_calibration_grid: tuple[A3Params, ...] = A3_GRID
    # the vehicle set-ups the truth is also judged on second by second (() skips)
    vehicles: tuple[str, ...] = SYNTHETIC_SETUPS

    def __post_init__(self) -> None:
        known = POLICY_NAMES + EXTRA_POLICY_NAMES
        unknown = [p for p in self.policies if p not in known]
        if unknown:
            raise InvalidInputError(
                f"unknown policies {unknown}; known: {', '.join(known)}", field="policies"
            )
        if "a3_default" not in self.policies:
            raise InvalidInputError(
                "the policies must include the baseline a3_default", field="policies"
            )
        if "a3_tuned" in self.policies and not self.a3_sweep:
            raise InvalidInputError("a3_tuned needs a non-empty a3_sweep", field="a3_sweep")
        app_profile(self.app)
        for name in self.vehicles:
            vehicle_setup(name)


@dataclass(frozen=True)
class Scenario:
    """One evaluation route: its corridor, the planner's map on it and the commap plan."""

    name: str
    corridor: Corridor
    matrix: QualityMatrix
    plan: IntArray

    @property
    def length_km(self) -> float:
        """Route length (km)."""
        return self.corridor.total_length_m / 1000.0


@dataclass(frozen=True)
class StripData:
    """What the strip chart draws: one route, one seed, every policy."""

    route: str
    seed: int
    network_ids: tuple[str, ...]
    distance_m: FloatArray
    sinr_db: FloatArray  # (T, N) slow truth
    planned_sinr_db: FloatArray  # (S, N) the planner's map
    segment_distance_m: FloatArray
    serving: dict[str, IntArray]
    failures: dict[str, FloatArray]  # distance of every RLF/HOF per policy


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_map` (the report is written from it)."""

    map_name: str
    seeds: int
    sigma_db: float
    config: EvaluationConfig
    scenarios: list[Scenario]
    runs: pd.DataFrame
    sweep: pd.DataFrame
    summary: pd.DataFrame
    bar: dict[str, Any]
    strip: StripData | None
    outage_durations_s: dict[str, FloatArray]
    wall_s: float  # seconds of the evaluation, replays included (the CLI adds the map load)
    cork: CorkReplay | None = None
    autobahn: StarlinkBridges | None = None
    a3_calibration: A3Calibration | None = None
    # the truth second by second on every vehicle set-up (the rows of summary.csv)
    seconds: SecondsTotals = field(default_factory=SecondsTotals)


def default_routes(cmap: CommMap) -> list[Route]:
    """The evaluation routes of a map (named :attr:`Route.name`).

    Known maps use :data:`DEFAULT_ROUTES`; any other map with roads gets the fastest routes
    between the road nodes nearest to its bounding box's opposite corners.

    Raises
    ------
    InvalidInputError
        For a map without a road graph.

    Examples
    --------
    >>> sorted(DEFAULT_ROUTES)
    ['andorra']
    """
    if cmap.roads is None:
        raise InvalidInputError(f"map {cmap.name} has no road graph: give the routes explicitly")
    pairs = DEFAULT_ROUTES.get(cmap.name)
    if pairs is None:
        lon0, lat0, lon1, lat1 = cmap.bbox
        dx, dy = 0.1 * (lon1 - lon0), 0.1 * (lat1 - lat0)
        pairs = (
            ("sw-ne", (lon0 + dx, lat0 + dy), (lon1 - dx, lat1 - dy)),
            ("nw-se", (lon0 + dx, lat1 - dy), (lon1 - dx, lat0 + dy)),
        )
    routes = []
    for name, origin, destination in pairs:
        route = cmap.routes(origin, destination)[0]
        routes.append(replace(route, name=name))
    return routes


def plan_assignment(
    corridor: Corridor,
    matrix: QualityMatrix,
    catalogue: NetworkCatalogue,
    *,
    config: EvaluationConfig,
    vehicle: VehicleSetup | None = None,
) -> IntArray:
    """The optimizer's plan (network column per segment) on ``matrix``.

    :func:`commap.plan.plan_corridor` with the exact DP and the link model, objective,
    application and minimum dwell of ``config`` (no global constraints, so the DP is optimal),
    for ``vehicle`` (default: the link model's switch times).

    Examples
    --------
    >>> plan_assignment.__name__
    'plan_assignment'
    """
    from commap.plan import Constraints, plan_corridor

    plan = plan_corridor(
        corridor,
        matrix,
        catalogue,
        link=config.link,
        app=config.app,
        objective=config.objective,
        constraints=Constraints(min_dwell_s=config.min_dwell_s),
        solver="dp",
        vehicle=vehicle,
    )
    return np.asarray(plan.assignment, dtype=np.int64)


def prepare_scenarios(
    cmap: CommMap,
    routes: Sequence[Route],
    config: EvaluationConfig,
    progress: ProgressArg = None,
) -> list[Scenario]:
    """Corridor, planner's map and commap plan of every route."""
    report = as_progress(progress, label="evaluation", unit="route drives")
    scenarios = []
    for i, route in enumerate(routes):
        name = route.name or f"route{i + 1}"
        corridor = cmap.corridor(route)
        matrix = cmap.quality(corridor)
        plan = plan_assignment(corridor, matrix, cmap.catalogue, config=config)
        report.message(
            f"route {name}: {corridor.total_length_m / 1000:.1f} km, {len(corridor)} segments, "
            f"commap plan with {int((plan[1:] != plan[:-1]).sum())} switches"
        )
        scenarios.append(Scenario(name=name, corridor=corridor, matrix=matrix, plan=plan))
    return scenarios


class _SeedRun:
    """All drives of one (route, seed)."""

    def __init__(
        self,
        scenario: Scenario,
        networks: tuple[Network, ...],
        catalogue: NetworkCatalogue,
        config: EvaluationConfig,
        seed: int,
        route_index: int,
    ) -> None:
        self.scenario = scenario
        self.networks = networks
        self.config = config
        self.seed = seed
        self.truth: TruthField = make_truth(
            scenario.corridor,
            scenario.matrix,
            networks,
            config=config.truth,
            seed=(seed, route_index),
        )
        self.measurements = Measurements(self.truth, config.sim)
        self.catalogue = catalogue
        self.app = app_profile(config.app)
        self._oracle: IntArray | None = None

    def drive(self, policy: Policy) -> tuple[DriveLog, dict[str, Any]]:
        log_ = simulate(
            self.truth,
            policy,
            self.networks,
            link=self.config.link,
            config=self.config.sim,
            measurements=self.measurements,
        )
        row = run_metrics(
            log_, self.truth, self.networks, app=self.app, route=self.scenario.name, seed=self.seed
        )
        return log_, row

    def judge_seconds(self, commap_plans: dict[str, IntArray], totals: SecondsTotals) -> None:
        """The truth second by second on every configured set-up, added to ``totals``
        (``commap_plans``: this route's commap plan per set-up, made once for every seed)."""
        cfg = self.config
        scenario = self.scenario

        def planner(matrix: QualityMatrix, setup: VehicleSetup) -> IntArray:
            catalogue = NetworkCatalogue([self.catalogue[n] for n in matrix.network_ids])
            return plan_assignment(scenario.corridor, matrix, catalogue, config=cfg, vehicle=setup)

        scores, splits = judge_truth(
            self.truth,
            scenario.corridor,
            scenario.matrix,
            self.networks,
            setups=[vehicle_setup(v) for v in cfg.vehicles],
            planner=planner,
            commap_plans=commap_plans,
            link=cfg.link,
            tolerance_s=self.app.tolerated_gap_s,
            mb_per_s=self.app.mb_per_s,
        )
        totals.add(scores, splits)

    def oracle_plan(self) -> IntArray:
        """The plan made on the truth (cached: both oracle policies drive it)."""
        if self._oracle is None:
            truth_matrix = self.truth.segment_matrix(len(self.scenario.corridor))
            self._oracle = plan_assignment(
                self.scenario.corridor, truth_matrix, self.catalogue, config=self.config
            )
        return self._oracle

    def policy(self, name: str) -> Policy:
        cfg = self.config
        if name == "a3_default":
            return A3Policy(A3_DEFAULT, name=name, return_home_s=cfg.return_home_s)
        if name == "greedy":
            return GreedyPolicy()
        if name == "sticky":
            return StickyPolicy()
        if name == "commap":
            return FallbackPlanPolicy(self.scenario.plan, name=name, min_dwell_s=cfg.min_dwell_s)
        if name == "commap_open_loop":
            return PlanPolicy(self.scenario.plan, name=name, min_dwell_s=cfg.min_dwell_s)
        if name == "oracle":
            return FallbackPlanPolicy(self.oracle_plan(), name=name, min_dwell_s=cfg.min_dwell_s)
        if name == "rules_without_plan":
            plan = map_free_plan(self.networks, len(self.scenario.corridor))
            return FallbackPlanPolicy(plan, name=name, min_dwell_s=cfg.min_dwell_s)
        if name == "oracle_open_loop":
            return PlanPolicy(self.oracle_plan(), name=name, min_dwell_s=cfg.min_dwell_s)
        raise InvalidInputError(f"no direct policy {name!r}")


def evaluate_scenarios(
    scenarios: Sequence[Scenario],
    catalogue: NetworkCatalogue,
    *,
    seeds: int,
    config: EvaluationConfig,
    progress: ProgressArg = None,
    first_seed: int = 0,
    seconds: SecondsTotals | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, StripData | None, dict[str, FloatArray]]:
    """Drive every policy on every (route, seed): ``runs``, ``sweep``, strip data, outages.

    ``progress`` counts (route, seed) pairs; each drives every policy on one truth. The seeds
    are ``first_seed .. first_seed + seeds - 1``. With ``seconds`` every truth is also judged
    second by second on ``config.vehicles`` and added to it.
    """
    report = as_progress(progress, label="evaluation", unit="route drives")
    report.total(len(scenarios) * seeds)
    networks = tuple(catalogue.networks)
    rows: list[dict[str, Any]] = []
    sweep_rows: list[dict[str, Any]] = []
    durations: dict[str, list[FloatArray]] = {p: [] for p in config.policies}
    strip: StripData | None = None
    direct = [p for p in config.policies if p != "a3_tuned"]
    for ri, scenario in enumerate(scenarios):
        commap_plans: dict[str, IntArray] = {}
        for seed in range(first_seed, first_seed + seeds):
            run = _SeedRun(scenario, networks, catalogue, config, seed, ri)
            if seconds is not None and config.vehicles:
                run.judge_seconds(commap_plans, seconds)
            logs: dict[str, DriveLog] = {}
            for name in direct:
                logs[name], row = run.drive(run.policy(name))
                rows.append(row)
                durations[name].append(outage_durations_s(logs[name].outage_s))
            if "a3_tuned" in config.policies:
                for params in config.a3_sweep:
                    sweep_log, row = run.drive(
                        A3Policy(params, name="a3_tuned", return_home_s=config.return_home_s)
                    )
                    row.update(
                        a3=params.label,
                        hysteresis_db=params.hysteresis_db,
                        ttt_ms=round(params.ttt_s * 1000),
                    )
                    row["_outages"] = outage_durations_s(sweep_log.outage_s)
                    row["_serving"] = sweep_log.serving if seed == config.strip_seed else None
                    row["_failures"] = _failure_distances(sweep_log)
                    sweep_rows.append(row)
            if ri == 0 and seed == config.strip_seed:
                strip = _strip(scenario, run.truth, logs)
            report.advance()
    runs = pd.DataFrame(rows)
    sweep = pd.DataFrame(sweep_rows)
    if not sweep.empty:
        tuned, sweep = _pick_tuned(sweep)
        runs = pd.concat(
            [runs, tuned.drop(columns=["_outages", "_serving", "_failures"])], ignore_index=True
        )
        durations["a3_tuned"] = list(tuned["_outages"])
        if strip is not None:
            first = tuned[(tuned["route"] == strip.route) & (tuned["seed"] == strip.seed)]
            if len(first):
                strip.serving["a3_tuned"] = first["_serving"].iloc[0]
                strip.failures["a3_tuned"] = first["_failures"].iloc[0]
    order = {p: i for i, p in enumerate(config.policies)}
    if strip is not None:  # chart rows in the configured order
        for name in sorted(strip.serving, key=lambda p: order.get(p, len(order))):
            strip.serving[name] = strip.serving.pop(name)
    runs = runs.sort_values(
        ["route", "seed", "policy"],
        key=lambda s: s.map(order) if s.name == "policy" else s,
        kind="stable",
    ).reset_index(drop=True)
    merged = {p: np.concatenate(v) if v else np.zeros(0) for p, v in durations.items()}
    return runs, sweep, strip, merged


def _failure_distances(log_: DriveLog) -> FloatArray:
    return np.array([e.distance_m for e in log_.events if e.kind in ("rlf", "hof")])


def _strip(scenario: Scenario, truth: TruthField, logs: dict[str, DriveLog]) -> StripData:
    c = scenario.corridor
    return StripData(
        route=scenario.name,
        seed=int(truth.seed[0]) if isinstance(truth.seed, tuple) else int(truth.seed),
        network_ids=truth.network_ids,
        distance_m=truth.distance_m,
        sinr_db=truth.sinr_db,
        planned_sinr_db=scenario.matrix.sinr_db,
        segment_distance_m=c.distance_m + c.length_m / 2.0,
        serving={name: log_.serving for name, log_ in logs.items()},
        failures={name: _failure_distances(log_) for name, log_ in logs.items()},
    )


def _pick_tuned(sweep: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per route: the sweep entry with the fewest mean avoidable drops, then handovers."""
    means = (
        sweep.groupby(["route", "a3"], sort=False)
        .agg(
            hysteresis_db=("hysteresis_db", "first"),
            ttt_ms=("ttt_ms", "first"),
            avoidable_drops=("avoidable_drops", "mean"),
            handovers=("handovers", "mean"),
            drops=("drops", "mean"),
            outage_s=("outage_s", "mean"),
        )
        .reset_index()
    )
    # ties: fewer handovers, then the parameters closest to the defaults
    means["_distance"] = (means["hysteresis_db"] - A3_DEFAULT.hysteresis_db).abs() + (
        means["ttt_ms"] - A3_DEFAULT.ttt_s * 1000
    ).abs() / 1000.0
    best = (
        means.sort_values(["route", "avoidable_drops", "handovers", "_distance"], kind="stable")
        .groupby("route", sort=False)
        .head(1)
    )
    chosen = set(zip(best["route"], best["a3"], strict=True))
    means["chosen"] = [(r, a) in chosen for r, a in zip(means["route"], means["a3"], strict=True)]
    mask = [(r, a) in chosen for r, a in zip(sweep["route"], sweep["a3"], strict=True)]
    tuned = sweep[mask].copy()
    tuned["policy"] = "a3_tuned"
    tuned = tuned.drop(columns=["a3", "hysteresis_db", "ttt_ms"])
    return tuned, means.drop(columns=["_distance"])


def _pair_bar(
    get: Callable[[str, str], float], plan: str, oracle: str, policies: set[str]
) -> dict[str, Any]:
    """The target figures and criteria for one plan policy (and its oracle, if evaluated)."""
    a3_drops = get("a3_default", "avoidable_drops_per_hour")
    drops = get(plan, "avoidable_drops_per_hour")
    reduction = 1.0 - drops / a3_drops if a3_drops > 0 else (0.0 if drops > 0 else 1.0)
    handovers, a3_ho = get(plan, "handovers_per_hour"), get("a3_default", "handovers_per_hour")
    out: dict[str, Any] = {
        "avoidable_drops_per_hour": drops,
        "avoidable_reduction_pct": 100.0 * reduction,
        "handovers_per_hour": handovers,
        "ping_pong_ratio": get(plan, "ping_pong_ratio"),
        "ping_pong_ratio_5s": get(plan, "ping_pong_ratio_5s"),
        "fewer_avoidable_drops_50pct": reduction >= 0.5,
        "no_more_handovers_than_a3": handovers <= a3_ho + 1e-9,
        "no_ping_pong": get(plan, "ping_pong_ratio") == 0.0,
    }
    if oracle in policies:
        best = get(oracle, "avoidable_drops_per_hour")
        out["oracle_avoidable_drops_per_hour"] = best
        if best > 0:
            out["over_oracle_pct"] = 100.0 * (drops - best) / best
        else:
            out["over_oracle_pct"] = 0.0 if drops == 0 else math.inf
        out["within_10pct_of_oracle"] = drops <= 1.1 * best + 1e-9
    out["passed"] = all(v for v in out.values() if isinstance(v, bool))
    return out


def check_bar(summary: pd.DataFrame) -> dict[str, Any]:
    """The targets: commap vs a3_default and oracle (avoidable drops, handovers, ping-pong).

    Keys without a prefix are about ``commap`` (the plan as commap executes it, closed loop;
    ``passed`` for all its criteria); keys starting with ``open_loop_`` are the same figures for
    ``commap_open_loop`` against ``oracle_open_loop``, when evaluated.

    Examples
    --------
    >>> check_bar(pd.DataFrame({"policy": ["greedy"]}))
    {}
    """
    policies = set(summary["policy"])
    if not {"commap", "a3_default"} <= policies:
        return {}

    def get(policy: str, column: str) -> float:
        if column not in summary.columns:
            return math.nan
        return float(summary.loc[summary["policy"] == policy, column].iloc[0])

    bar: dict[str, Any] = {
        "a3_avoidable_drops_per_hour": get("a3_default", "avoidable_drops_per_hour"),
        "a3_handovers_per_hour": get("a3_default", "handovers_per_hour"),
    }
    main = _pair_bar(get, "commap", "oracle", policies)
    for key, value in main.items():
        named = key in (
            "avoidable_drops_per_hour",
            "handovers_per_hour",
            "ping_pong_ratio",
            "ping_pong_ratio_5s",
            "over_oracle_pct",
        )
        bar[f"commap_{key}" if named else key] = value
    if "commap_open_loop" in policies:
        open_loop = _pair_bar(get, "commap_open_loop", "oracle_open_loop", policies)
        bar.update({f"open_loop_{key}": value for key, value in open_loop.items()})
    return bar


def evaluate_map(
    cmap: CommMap,
    *,
    seeds: int = 20,
    sigma_db: float = 6.0,
    routes: Sequence[Route] | None = None,
    progress: ProgressArg = None,
    config: EvaluationConfig | None = None,
    first_seed: int = 0,
) -> EvaluationResult:
    """Run the drops benchmark on a map (``commap evaluate``; the report is written by
    :func:`commap.out.evaluation_report.write_evaluation_report`).

    Parameters
    ----------
    cmap : CommMap
        The loaded map (its layers are the planner's map).
    seeds : int
        Truth seeds (>= 1; the published figures use 20).
    sigma_db : float
        Map-error shadowing sigma of the truth (overrides ``config.truth.sigma_db``).
    routes : sequence of Route, optional
        Routes to drive (default :func:`default_routes`).
    progress : commap.progress.Progress or callable(str), optional
        Status lines and the count of (route, seed) drives done; default: the log.
    config : EvaluationConfig, optional
        Everything else (with ``real_traces`` the Cork and Autobahn replays join the report).
    first_seed : int
        First truth seed (the published figures use seeds 0-19; other seeds are held out to
        choose defaults on, so the published figures are not what the defaults were fit to).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    InvalidInputError
        ``seeds < 1``, a negative sigma, no routes, a route outside the map.

    Examples
    --------
    >>> evaluate_map(None, seeds=0)  # checked before the map is used
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: seeds must be >= 1, got 0
    >>> evaluate_map(None, first_seed=-1)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: first_seed must be >= 0, got -1
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be >= 1, got {seeds}", field="seeds")
    if not isinstance(first_seed, int) or first_seed < 0:
        raise InvalidInputError(f"first_seed must be >= 0, got {first_seed}", field="first_seed")
    if not (math.isfinite(sigma_db) and sigma_db >= 0):
        raise InvalidInputError(
            f"sigma_db must be a finite number >= 0, got {sigma_db}", field="sigma_db"
        )
    start = time.perf_counter()
    base = config or EvaluationConfig()
    cfg = replace(base, truth=replace(base.truth, sigma_db=float(sigma_db)))
    chosen = list(routes) if routes is not None else default_routes(cmap)
    if not chosen:
        raise InvalidInputError("no routes to evaluate", field="routes")
    report = as_progress(progress, label="evaluation", unit="route drives")
    scenarios = prepare_scenarios(cmap, chosen, cfg, report)
    totals = SecondsTotals(seeds=seeds)
    runs, sweep, strip, outages = evaluate_scenarios(
        scenarios,
        cmap.catalogue,
        seeds=seeds,
        config=cfg,
        progress=report,
        first_seed=first_seed,
        seconds=totals,
    )
    summary = aggregate(runs)
    order = {p: i for i, p in enumerate(cfg.policies)}
    summary = summary.sort_values("policy", key=lambda s: s.map(order)).reset_index(drop=True)
    # what the figures were judged on and which vehicle drove: the drive simulator's truth, one
    # modem with a SIM per operator (an operator switch re-registers) and an always-on
    # satellite terminal (a change to or from it is a route change)
    summary.insert(0, "vehicle", "satellite_always_on")
    summary.insert(0, "truth", "synthetic")
    result = EvaluationResult(
        map_name=cmap.name,
        seeds=seeds,
        sigma_db=float(sigma_db),
        config=cfg,
        scenarios=scenarios,
        runs=runs,
        sweep=sweep,
        summary=summary,
        bar=check_bar(summary),
        strip=strip,
        outage_durations_s=outages,
        wall_s=math.nan,
        seconds=totals,
    )
    if cfg.real_traces is not None:
        result.cork, result.autobahn = run_replays(cfg.real_traces)
        if cfg.a3_calibration_grid:
            result.a3_calibration = calibrate_cork(cfg.real_traces, grid=cfg.a3_calibration_grid)
    result.wall_s = time.perf_counter() - start  # the whole evaluation, replays included
    return result
