#!/usr/bin/env node
// commap Node.js test rig: a gRPC client in another language than the server.
//
//   node clients/node/rig.mjs --target 127.0.0.1:50051 [--map andorra] [--json]
//
// 1. ListMaps, then PlanRoute across the default map and check the plan's shape;
// 2. a Drive stream: start, then position fixes along the planned segments (vehicle time, sent
//    as fast as the server reads them); check every handover is announced once, ahead of its
//    point, then close the stream and expect OK;
// 3. PlanRoute with latitude 91: expect INVALID_ARGUMENT naming the field.
// Prints one JSON summary line with --json; exits 0 when every check passed, 1 otherwise.
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = path.resolve(HERE, "..", "..", "protos");

function parseArgs(argv) {
  const args = { target: "127.0.0.1:50051", map: "", json: false, timeoutS: 120 };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === "--target") args.target = argv[++i];
    else if (a === "--map") args.map = argv[++i];
    else if (a === "--json") args.json = true;
    else if (a === "--timeout-s") args.timeoutS = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

function loadService() {
  const definition = protoLoader.loadSync("commap/v1/commap_service.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).commap.v1.CommapService;
}

const deadline = (seconds) => new Date(Date.now() + seconds * 1000);

function unary(client, method, request, timeoutS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline(timeoutS) }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

const toTimestamp = (tS) => {
  const seconds = Math.floor(tS);
  return { seconds, nanos: Math.round((tS - seconds) * 1e9) };
};
const fromTimestamp = (ts) => Number(ts.seconds) + ts.nanos / 1e9;

// The same trip the Makefile's `run` target plans: Andorra la Vella -> Pas de la Casa.
const TRIP = {
  endpoints: {
    origin: { latitude_deg: 42.5063, longitude_deg: 1.5218 },
    destination: { latitude_deg: 42.543, longitude_deg: 1.733 },
    waypoints: [],
  },
};

async function checkPlan(client, mapName, args, checks) {
  const response = await unary(client, "PlanRoute", { map_name: mapName, ...TRIP }, args.timeoutS);
  const plan = response.plan;
  const lastSegment = plan.segments[plan.segments.length - 1];
  checks.plan_segments = plan.segments.length;
  checks.plan_handovers = plan.handovers.length;
  checks.plan_length_m = plan.totals.length_m;
  checks.plan_solver_status = plan.solver.status;
  const ordered = plan.handovers.every((h, i, all) => i === 0 || all[i - 1].distance_m <= h.distance_m);
  const consistent = plan.handovers.every((h) => h.from_network_id !== h.to_network_id);
  checks.plan_ok =
    plan.segments.length > 0 &&
    ordered &&
    consistent &&
    plan.totals.handover_count === plan.handovers.length &&
    Math.abs(lastSegment.distance_m + lastSegment.length_m - plan.totals.length_m) < 1.0;
  return plan;
}

function drive(client, mapName, plan, args, checks) {
  const leadTimeS = 8.0;
  return new Promise((resolve) => {
    const call = client.Drive({ deadline: deadline(args.timeoutS) });
    const instructions = [];
    let plans = 0;
    let error = null;
    call.on("data", (response) => {
      if (response.event === "plan") {
        plans += 1;
        if (plans === 1) {
          // drive the planned segments in vehicle time, one fix per segment centre
          const departureS = fromTimestamp(response.plan.plan.departure_time);
          const segs = response.plan.plan.segments;
          segs.forEach((seg, i) => {
            // the fix is at the segment centre: halfway between this segment's and the next one's eta
            const next = i + 1 < segs.length ? segs[i + 1].eta_s : seg.eta_s + (seg.eta_s - (segs[i - 1]?.eta_s ?? 0));
            const tS = departureS + 0.5 * (seg.eta_s + next);
            call.write({ update: { fix: { time: toTimestamp(tS), position: seg.position } } });
          });
          call.end();
        }
      } else if (response.event === "instruction") {
        instructions.push(response.instruction);
      }
    });
    call.on("error", (err) => {
      error = err;
    });
    call.on("status", (status) => {
      const seen = new Set(instructions.map((i) => i.handover.distance_m));
      const early = instructions.filter((i) => i.handover.eta_s >= leadTimeS + 1.0);
      checks.drive_status = grpc.status[status.code];
      checks.drive_instructions = instructions.length;
      checks.drive_min_lead_s = early.length ? Math.min(...early.map((i) => i.time_to_go_s)) : null;
      checks.drive_ok =
        error === null &&
        status.code === grpc.status.OK &&
        plans === 1 &&
        instructions.length === plan.handovers.length &&
        seen.size === instructions.length &&
        early.every((i) => i.time_to_go_s >= leadTimeS - 0.5);
      resolve();
    });
    call.write({
      start: {
        plan: { map_name: mapName, ...TRIP },
        vehicle_id: "node-rig",
        lead_time_s: leadTimeS,
      },
    });
  });
}

async function checkInvalid(client, mapName, args, checks) {
  const bad = {
    map_name: mapName,
    endpoints: { ...TRIP.endpoints, origin: { latitude_deg: 91, longitude_deg: 1.5218 } },
  };
  try {
    await unary(client, "PlanRoute", bad, args.timeoutS);
    checks.invalid_status = "OK";
    checks.invalid_ok = false;
  } catch (err) {
    checks.invalid_status = grpc.status[err.code];
    checks.invalid_details = err.details;
    checks.invalid_ok =
      err.code === grpc.status.INVALID_ARGUMENT && err.details.includes("endpoints.origin.latitude_deg");
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const Service = loadService();
  const client = new Service(args.target, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  });
  const checks = { target: args.target };
  const maps = await unary(client, "ListMaps", {}, args.timeoutS);
  const mapName = args.map || maps.default_map_name;
  checks.map = mapName;
  const plan = await checkPlan(client, mapName, args, checks);
  await drive(client, mapName, plan, args, checks);
  await checkInvalid(client, mapName, args, checks);
  checks.ok = Boolean(checks.plan_ok && checks.drive_ok && checks.invalid_ok);
  client.close();
  if (args.json) console.log(JSON.stringify(checks));
  else for (const [k, v] of Object.entries(checks)) console.log(`${k}: ${v}`);
  process.exitCode = checks.ok ? 0 : 1;
}

main().catch((err) => {
  console.error(`rig failed: ${err.stack || err}`);
  process.exitCode = 1;
});
