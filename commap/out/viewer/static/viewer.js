/* commap viewer: draws a map's roads, coverage and plan from the local server's JSON API.
 * Everything is fetched from the page's own origin (127.0.0.1); no tiles, no CDN. */
(function () {
  'use strict';

  var state = {
    meta: null,
    coverage: null,
    metric: 'sinr_db',
    enabled: {},          // network id -> bool
    layers: {},           // name -> L.LayerGroup
    planVersion: null,
    vehicles: {},         // id -> L.CircleMarker
    counts: {}
  };
  var statusEl = document.getElementById('status');

  function setStatus(text, error) {
    statusEl.textContent = text;
    if (error) { statusEl.setAttribute('data-error', '1'); }
  }

  function getJSON(path) {
    return fetch(path, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) { throw new Error(path + ': HTTP ' + r.status); }
      return r.json();
    });
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  function fmt(value, unit, digits) {
    if (value === null || value === undefined) { return '&ndash;'; }
    return Number(value).toFixed(digits === undefined ? 1 : digits) + (unit ? ' ' + unit : '');
  }

  function clock(seconds) {
    var s = Math.round(seconds);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (m < 10 ? '0' : '') + m, ss = (r < 10 ? '0' : '') + r;
    return (h ? h + ':' + mm : m) + ':' + ss;
  }

  // -- map and panes (drawing order: roads < coverage < risk < route < markers) ---------------
  var map = L.map('map', { zoomSnap: 0.25, attributionControl: true });
  map.attributionControl.setPrefix(false);
  [['roads', 410], ['coverage', 420], ['risk', 430], ['route', 440], ['marks', 610]].forEach(
    function (p) { map.createPane(p[0]).style.zIndex = String(p[1]); });
  L.control.scale({ imperial: false }).addTo(map);
  ['roads', 'coverage', 'risk', 'route', 'handovers', 'vehicles'].forEach(function (name) {
    state.layers[name] = L.layerGroup().addTo(map);
  });

  var legendBox = L.DomUtil.create('div', 'legend');
  var legendControl = L.control({ position: 'bottomleft' });
  legendControl.onAdd = function () {
    L.DomEvent.disableClickPropagation(legendBox);
    L.DomEvent.disableScrollPropagation(legendBox);
    return legendBox;
  };
  legendControl.addTo(map);

  // -- roads -----------------------------------------------------------------------------------
  var MAJOR = { motorway: 3, trunk: 3, primary: 2.5, secondary: 2, tertiary: 1.6 };
  function drawRoads(fc) {
    var layer = L.geoJSON(fc, {
      pane: 'roads',
      interactive: false,
      style: function (f) {
        var p = f.properties;
        return {
          color: p.tunnel ? state.meta.style.tunnel : state.meta.style.road,
          weight: MAJOR[p.highway] || 1,
          opacity: 0.9,
          dashArray: p.tunnel ? '3 4' : null
        };
      }
    });
    state.layers.roads.addLayer(layer);
    state.counts.roads = fc.features.length;
  }

  // -- coverage --------------------------------------------------------------------------------
  function classKey(net) {
    if (net.satellite) { return 'visibility_class'; }
    return state.metric === 'rsrp_dbm' ? 'rsrp_class' : 'sinr_class';
  }
  function classList(net) {
    if (net.satellite) { return state.meta.classes.elevation_deg; }
    return state.meta.classes[state.metric];
  }

  function drawCoverage() {
    var group = state.layers.coverage;
    group.clearLayers();
    var cov = state.coverage;
    var paths = 0;
    if (!cov) { return; }
    state.meta.networks.forEach(function (net) {
      if (!state.enabled[net.id] || !cov.networks[net.id]) { return; }
      var values = cov.networks[net.id];
      var cls = values[classKey(net)];
      var classes = classList(net);
      var buckets = {};   // "class|measured" -> [latlngs...]
      var unknown = [];   // no data near: the map's prior, drawn apart in its own colour
      for (var i = 0; i < cov.pieces.length; i++) {
        if (values.unknown && values.unknown[i]) { unknown.push(cov.pieces[i]); continue; }
        if (cls[i] < 0) { continue; }
        var key = cls[i] + '|' + (values.provenance[i] === 2 ? 1 : 0);
        (buckets[key] = buckets[key] || []).push(cov.pieces[i]);
      }
      Object.keys(buckets).sort().forEach(function (key) {
        var parts = key.split('|');
        var c = classes[Number(parts[0])];
        var measured = parts[1] === '1';
        if (measured) {  // measured values: bold with a dark edge; modelled: thin and plain
          L.polyline(buckets[key], { pane: 'coverage', color: state.meta.style.measured, weight: 9,
            opacity: 0.9, interactive: false }).addTo(group);
        }
        var line = L.polyline(buckets[key], {
          pane: 'coverage',
          color: c.color,
          weight: measured ? 6 : 3.5,
          opacity: measured ? 1 : 0.85
        });
        line.bindTooltip(escapeHtml(net.display_name) + '<br>' + escapeHtml(c.label) +
          ' (' + (measured ? 'measured' : 'modelled') + ')', { sticky: true });
        line.addTo(group);
        paths += 1;
      });
      if (unknown.length) {
        L.polyline(unknown, { pane: 'coverage', color: state.meta.style.unknown, weight: 4,
          opacity: 0.9, dashArray: '6 5', className: 'coverage-unknown' })
          .bindTooltip(escapeHtml(net.display_name) + '<br>unknown (no data near)', { sticky: true })
          .addTo(group);
        paths += 1;
      }
    });
    state.counts.coveragePaths = paths;
  }

  // -- plan ------------------------------------------------------------------------------------
  function drawPlan(fc) {
    ['route', 'risk', 'handovers'].forEach(function (n) { state.layers[n].clearLayers(); });
    var nRoute = 0, nHand = 0, nRisk = 0;
    var bounds = L.latLngBounds([]);
    fc.features.forEach(function (f) {
      var p = f.properties;
      if (p.layer === 'route') {
        // a dark casing sets the route apart from the coverage lines under it
        var casing = L.geoJSON(f, { pane: 'route', interactive: false,
          style: { color: '#111111', weight: 11, opacity: 1 } });
        var line = L.geoJSON(f, { pane: 'route',
          style: { color: p.color, weight: 6, opacity: 1 } });
        line.bindPopup('<b>' + escapeHtml(p.network_id || 'no network') + '</b><br>' +
          fmt(p.start_m / 1000, 'km', 2) + ' &ndash; ' + fmt(p.end_m / 1000, 'km', 2) +
          '<br>mean SINR ' + fmt(p.mean_sinr_db, 'dB') +
          '<br>expected drops ' + fmt(p.drop_expected, '', 3));
        state.layers.route.addLayer(casing).addLayer(line);
        bounds.extend(line.getBounds());
        nRoute += 1;
      } else if (p.layer === 'drop_risk') {
        var risk = L.geoJSON(f, { pane: 'risk',
          style: { color: state.meta.style.drop_risk, weight: 26, opacity: 0.5, lineCap: 'round' } });
        risk.bindTooltip('drop risk: up to ' + fmt(100 * p.max_drop_prob, '%', 0) +
          ' per segment, ' + fmt(p.drop_expected, 'expected drops', 2), { sticky: true });
        state.layers.risk.addLayer(risk);
        nRisk += 1;
      } else if (p.layer === 'handovers') {
        var c = f.geometry.coordinates;
        var colorOf = networkColor(p.to_network);
        var marker = L.circleMarker([c[1], c[0]], {
          pane: 'marks', radius: 7, color: '#111', weight: 2, fillColor: colorOf, fillOpacity: 1
        });
        marker.bindPopup('<b>handover</b><br>' + escapeHtml(p.from_network) + ' &rarr; ' +
          escapeHtml(p.to_network) + '<br>kind: ' + escapeHtml(String(p.kind).replace(/_/g, ' ')) +
          '<br>at ' + fmt(p.distance_m / 1000, 'km', 2) + ', ETA +' + clock(p.eta_s));
        marker.bindTooltip(escapeHtml(p.from_network) + ' &rarr; ' + escapeHtml(p.to_network));
        state.layers.handovers.addLayer(marker);
        nHand += 1;
      }
    });
    state.counts.route = nRoute;
    state.counts.handovers = nHand;
    state.counts.risk = nRisk;
    return bounds;
  }

  function networkColor(id) {
    var found = state.meta.networks.filter(function (n) { return n.id === id; })[0];
    return found ? found.color : state.meta.style.no_network;
  }

  // -- point details ---------------------------------------------------------------------------
  map.on('click', function (e) {
    var url = '/api/quality?lat=' + e.latlng.lat.toFixed(6) + '&lon=' + e.latlng.lng.toFixed(6);
    getJSON(url).then(function (q) {
      var rows = q.networks.map(function (n) {
        return '<tr><td>' + escapeHtml(n.id) + '</td><td>' + fmt(n.rsrp_dbm) + '</td><td>' +
          fmt(n.sinr_db) + '</td><td>' + fmt(n.elevation_deg) + '</td><td>' +
          escapeHtml(n.provenance) + '</td><td>' + (n.unknown ? 'unknown' : (n.usable ? 'yes' : 'no')) +
          '</td></tr>';
      }).join('');
      L.popup({ maxWidth: 420 }).setLatLng(e.latlng).setContent(
        '<b>' + e.latlng.lat.toFixed(5) + ', ' + e.latlng.lng.toFixed(5) + '</b>' +
        '<table class="quality"><tr><th>network</th><th>RSRP dBm</th><th>SINR dB</th>' +
        '<th>elev. deg</th><th>source</th><th>usable</th></tr>' + rows + '</table>'
      ).openOn(map);
    }).catch(function (err) {
      L.popup().setLatLng(e.latlng).setContent(escapeHtml(err.message)).openOn(map);
    });
  });

  // -- controls --------------------------------------------------------------------------------
  function buildControls() {
    var nets = state.meta.networks;
    var firstTerrestrial = nets.filter(function (n) { return !n.satellite; })[0] || nets[0];
    nets.forEach(function (n) { state.enabled[n.id] = firstTerrestrial && n.id === firstTerrestrial.id; });

    var box = document.getElementById('networks');
    nets.forEach(function (n) {
      var label = document.createElement('label');
      label.innerHTML = '<input type="checkbox" data-network="' + escapeHtml(n.id) + '"> ' +
        '<span class="swatch" style="background:' + n.color + '"></span>' +
        escapeHtml(n.display_name);
      label.title = n.id + ' (' + n.kind + ', ' + n.operator + ', ' + n.technology + ')';
      box.appendChild(label);
    });

    var groups = document.getElementById('groups');
    [['technology', 'Technology'], ['operator', 'Operator']].forEach(function (g) {
      var div = document.createElement('div');
      div.className = 'group';
      div.innerHTML = '<span>' + g[1] + ':</span>';
      var seen = [];
      nets.forEach(function (n) { if (seen.indexOf(n[g[0]]) < 0) { seen.push(n[g[0]]); } });
      seen.forEach(function (value) {
        var label = document.createElement('label');
        label.innerHTML = '<input type="checkbox" data-group="' + g[0] + '" data-value="' +
          escapeHtml(value) + '"> ' + escapeHtml(value.toUpperCase());
        div.appendChild(label);
      });
      groups.appendChild(div);
    });

    document.getElementById('panel').addEventListener('change', function (e) {
      var t = e.target;
      if (t.name === 'metric') { state.metric = t.value; }
      else if (t.dataset.network) { state.enabled[t.dataset.network] = t.checked; }
      else if (t.dataset.group) {
        nets.forEach(function (n) {
          if (n[t.dataset.group] === t.dataset.value) { state.enabled[n.id] = t.checked; }
        });
      } else if (t.dataset.layer) {
        var layer = t.dataset.layer === 'risk' ? state.layers.risk : state.layers[t.dataset.layer];
        if (t.checked) { map.addLayer(layer); } else { map.removeLayer(layer); }
        return;
      }
      syncControls();
      drawCoverage();
      drawLegend();
    });
    syncControls();
  }

  function syncControls() {
    var nets = state.meta.networks;
    document.querySelectorAll('input[data-network]').forEach(function (el) {
      el.checked = !!state.enabled[el.dataset.network];
    });
    document.querySelectorAll('input[data-group]').forEach(function (el) {
      var members = nets.filter(function (n) { return n[el.dataset.group] === el.dataset.value; });
      var on = members.filter(function (n) { return state.enabled[n.id]; }).length;
      el.checked = on === members.length;
      el.indeterminate = on > 0 && on < members.length;
    });
  }

  // -- legend ----------------------------------------------------------------------------------
  function swatchLine(color, weight, dash) {
    return '<svg width="34" height="12" aria-hidden="true"><line x1="2" y1="6" x2="32" y2="6" ' +
      'stroke="' + color + '" stroke-width="' + weight + '"' +
      (dash ? ' stroke-dasharray="' + dash + '"' : '') + '/></svg>';
  }
  function swatchMeasured() {
    return '<svg width="34" height="12" aria-hidden="true"><line x1="2" y1="6" x2="32" y2="6" ' +
      'stroke="' + state.meta.style.measured + '" stroke-width="9"/><line x1="3" y1="6" x2="31" ' +
      'y2="6" stroke="' + state.meta.style.modelled + '" ' +
      'stroke-width="6"/></svg>';
  }
  function routeSwatch(color) {
    return '<svg width="34" height="14" aria-hidden="true"><line x1="2" y1="7" x2="32" y2="7" ' +
      'stroke="#111" stroke-width="11"/><line x1="3" y1="7" x2="31" y2="7" stroke="' + color +
      '" stroke-width="6"/></svg>';
  }
  function swatchDot(color) {
    return '<svg width="34" height="14" aria-hidden="true"><circle cx="17" cy="7" r="5.5" ' +
      'fill="' + color + '" stroke="#111" stroke-width="2"/></svg>';
  }
  function row(svg, text) {
    return '<div class="legend-row">' + svg + '<span>' + text + '</span></div>';
  }

  function drawLegend() {
    var meta = state.meta;
    var html = '';
    var enabled = meta.networks.filter(function (n) { return state.enabled[n.id]; });
    var anyTerrestrial = enabled.some(function (n) { return !n.satellite; });
    var anySatellite = enabled.some(function (n) { return n.satellite; });
    if (anyTerrestrial || !anySatellite) {
      html += '<div class="legend-title">' + (state.metric === 'rsrp_dbm' ? 'RSRP' : 'SINR') + '</div>';
      meta.classes[state.metric].forEach(function (c) { html += row(swatchLine(c.color, 5), escapeHtml(c.label)); });
    }
    if (anySatellite) {
      html += '<div class="legend-title">Satellite visibility</div>';
      meta.classes.elevation_deg.forEach(function (c) { html += row(swatchLine(c.color, 5), escapeHtml(c.label)); });
    }
    html += '<div class="legend-title">Source</div>';
    html += row(swatchMeasured(), 'measured (drive tests)');
    html += row(swatchLine(meta.style.modelled, 3.5), 'modelled');
    html += row(swatchLine(meta.style.unknown, 4), 'unknown (no data near)');
    if (state.counts.route) {
      html += '<div class="legend-title">Plan: serving network</div>';
      var used = {};
      state.planFeatures.forEach(function (f) {
        if (f.properties.layer === 'route') { used[f.properties.network_id] = f.properties.color; }
      });
      Object.keys(used).sort().forEach(function (id) { html += row(routeSwatch(used[id]), escapeHtml(id)); });
      html += row(swatchDot('#fff'), 'handover (fill: new network)');
      html += row(swatchLine(meta.style.drop_risk, 12), 'drop risk');
    }
    if (meta.live) {
      html += row('<svg width="34" height="16" aria-hidden="true"><circle cx="17" cy="8" r="6" ' +
        'fill="#ffeb3b" stroke="#000" stroke-width="3"/></svg>', 'vehicle (live)');
    }
    html += '<div class="legend-title">Roads</div>';
    html += row(swatchLine(meta.style.road, 2), 'road');
    html += row(swatchLine(meta.style.tunnel, 2, '3 4'), 'tunnel (no signal)');
    legendBox.innerHTML = html;
  }

  // -- live vehicles ---------------------------------------------------------------------------
  function pollVehicles() {
    getJSON('/api/vehicles').then(function (v) {
      var seen = {};
      v.vehicles.forEach(function (veh) {
        seen[veh.id] = true;
        var m = state.vehicles[veh.id];
        if (!m) {
          m = L.circleMarker([veh.lat, veh.lon], { pane: 'marks', radius: 9, color: '#000',
            weight: 3, fillColor: '#ffeb3b', fillOpacity: 1 });
          state.vehicles[veh.id] = m.addTo(state.layers.vehicles);
        }
        m.setLatLng([veh.lat, veh.lon]);
        m.bindTooltip(escapeHtml(veh.id) + (veh.network_id ? ' on ' + escapeHtml(veh.network_id) : '') +
          (veh.note ? '<br>' + escapeHtml(veh.note) : ''));
      });
      Object.keys(state.vehicles).forEach(function (id) {
        if (!seen[id]) { state.layers.vehicles.removeLayer(state.vehicles[id]); delete state.vehicles[id]; }
      });
      if (state.planVersion !== null && v.plan_version !== state.planVersion) {
        state.planVersion = v.plan_version;
        getJSON('/api/plan').then(function (fc) { state.planFeatures = fc.features; drawPlan(fc); drawLegend(); });
      }
      state.planVersion = v.plan_version;
    }).catch(function (err) { setStatus('live update failed: ' + err.message, true); });
  }

  // -- start -----------------------------------------------------------------------------------
  getJSON('/api/meta').then(function (meta) {
    state.meta = meta;
    document.getElementById('title').textContent = meta.title;
    document.getElementById('subtitle').textContent = 'Map ' + meta.name + ', coverage at ' +
      new Date(meta.t_s * 1000).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
    document.title = 'commap: ' + meta.name;
    map.attributionControl.addAttribution(meta.attribution.map(escapeHtml).join(' | ') ||
      '&copy; OpenStreetMap contributors');
    var b = meta.bbox;
    map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    buildControls();
    return Promise.all([getJSON('/api/roads'), getJSON('/api/coverage'), getJSON('/api/plan')]);
  }).then(function (parts) {
    drawRoads(parts[0]);
    state.coverage = parts[1];
    drawCoverage();
    state.planFeatures = parts[2].features;
    var bounds = drawPlan(parts[2]);
    if (bounds.isValid()) { map.fitBounds(bounds, { paddingTopLeft: [240, 30], paddingBottomRight: [30, 30] }); }
    drawLegend();
    if (state.meta.live) { pollVehicles(); setInterval(pollVehicles, 1000); }
    var c = state.counts;
    setStatus('ready: ' + c.roads + ' roads, ' + c.coveragePaths + ' coverage paths, ' +
      c.route + ' route pieces, ' + c.handovers + ' handovers, ' + c.risk + ' drop-risk stretches');
    statusEl.dataset.routePieces = String(c.route);
    statusEl.dataset.handovers = String(c.handovers);
    statusEl.dataset.ready = '1';
  }).catch(function (err) {
    setStatus('error: ' + err.message, true);
  });
}());
