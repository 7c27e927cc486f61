// Ferry's browser upload page: tus 1.0 uploads with tus-js-client (served beside this file as
// /upload/tus.min.js). No framework, no inline script (Content-Security-Policy: script-src 'self').
//
// Resuming: tus-js-client keeps each upload's URL in localStorage under the file's fingerprint
// (name, type, size, last modified, endpoint); choosing the same file again after a reload finds it
// (findPreviousUploads), asks the server how much it holds (HEAD) and continues from there.
// Lost connections: retryDelays, and uploads that gave up are started again when the browser is online.
//
// Query parameters: chunkSize=<bytes> (default 8 MiB), the size of one PATCH.
(function () {
  'use strict';

  var MiB = 1024 * 1024;
  var TOKEN_KEY = 'ferry.upload.token';
  var ENDPOINT = new URL('/files/', window.location.href).href;
  var RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000];
  var params = new URLSearchParams(window.location.search);
  var CHUNK_SIZE = positiveInteger(params.get('chunkSize')) || 8 * MiB;

  var tokenInput = document.getElementById('token');
  var fileInput = document.getElementById('file');
  var drop = document.getElementById('drop');
  var list = document.getElementById('uploads');
  var notice = document.getElementById('notice');
  var entries = [];

  if (!window.tus || !window.tus.isSupported) {
    say('This browser cannot upload here (tus-js-client is missing or unsupported).');
    fileInput.disabled = true;
    return;
  }

  tokenInput.value = storageGet(TOKEN_KEY) || '';
  tokenInput.addEventListener('input', function () {
    storageSet(TOKEN_KEY, tokenInput.value.trim());
  });

  fileInput.addEventListener('change', function () {
    addFiles(fileInput.files);
    fileInput.value = ''; // the same file may be chosen again
  });
  drop.addEventListener('dragover', function (event) {
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', function () {
    drop.classList.remove('over');
  });
  drop.addEventListener('drop', function (event) {
    event.preventDefault();
    drop.classList.remove('over');
    addFiles(event.dataTransfer.files);
  });

  window.addEventListener('offline', function () {
    say('Offline: uploads go on when the connection is back.');
  });
  window.addEventListener('online', function () {
    say('Back online.');
    entries.forEach(function (entry) {
      if (entry.state === 'error') entry.resume();
    });
  });

  function addFiles(files) {
    if (!files || files.length === 0) return;
    if (!token()) say('No token: the server may refuse the uploads (401). Enter your token above.');
    for (var i = 0; i < files.length; i++) entries.push(new Entry(files[i]));
  }

  function token() {
    return tokenInput.value.trim();
  }

  function authHeaders() {
    var t = token();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  /** One file's upload and its row in the list. */
  function Entry(file) {
    var self = this;
    this.file = file;
    this.state = 'starting';
    this.samples = [];

    this.row = element('li', { className: 'upload', 'data-state': 'starting' });
    var header = element('header');
    header.appendChild(element('span', { className: 'name', textContent: file.name }));
    header.appendChild(element('span', { className: 'size', textContent: formatBytes(file.size) }));
    this.row.appendChild(header);
    this.bar = element('progress', { max: 100, value: 0 });
    this.bar.setAttribute('aria-label', 'Upload of ' + file.name);
    this.row.appendChild(this.bar);
    this.stats = element('div', { className: 'stats', textContent: '0 B of ' + formatBytes(file.size) + ' (0%)' });
    this.row.appendChild(this.stats);
    this.resumed = element('div', { className: 'resumed', hidden: true });
    this.row.appendChild(this.resumed);
    this.status = element('div', { className: 'state', role: 'status', textContent: 'Starting…' });
    this.row.appendChild(this.status);
    var actions = element('div', { className: 'actions' });
    this.pauseButton = element('button', { type: 'button', textContent: 'Pause', className: 'pause' });
    this.resumeButton = element('button', { type: 'button', textContent: 'Resume', className: 'resume secondary', disabled: true });
    this.pauseButton.setAttribute('aria-label', 'Pause ' + file.name);
    this.resumeButton.setAttribute('aria-label', 'Resume ' + file.name);
    this.pauseButton.addEventListener('click', function () {
      self.pause();
    });
    this.resumeButton.addEventListener('click', function () {
      self.resume();
    });
    actions.appendChild(this.pauseButton);
    actions.appendChild(this.resumeButton);
    this.link = element('span', { className: 'link' });
    actions.appendChild(this.link);
    this.row.appendChild(actions);
    list.appendChild(this.row);
    this.setState('starting', 'Starting…');

    this.upload = new window.tus.Upload(file, {
      endpoint: ENDPOINT,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      // the token as it is now (it may be entered or changed after the file was chosen)
      onBeforeRequest: function (req) {
        var t = token();
        if (t) req.setHeader('Authorization', 'Bearer ' + t);
      },
      onProgress: function (sent, total) {
        self.progress(sent, total);
      },
      onShouldRetry: function (err, attempt) {
        var status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        // a refusal (bad token, scope, too large) does not get better by trying again
        if (status >= 400 && status < 500 && status !== 409 && status !== 423 && status !== 429) return false;
        self.setState('retrying', 'Connection trouble: trying again (attempt ' + (attempt + 1) + ')…');
        return true;
      },
      onSuccess: function () {
        self.finished();
      },
      onError: function (err) {
        self.failed(err);
      },
    });
    this.begin();
  }

  /** Looks for an earlier upload of this file (same fingerprint) the server still holds, then starts. */
  Entry.prototype.begin = function () {
    var self = this;
    this.upload
      .findPreviousUploads()
      .then(function (previous) {
        previous.sort(function (a, b) {
          return String(b.creationTime).localeCompare(String(a.creationTime));
        });
        return resumable(previous);
      })
      .then(function (found) {
        if (found) {
          self.upload.resumeFromPreviousUpload(found.upload);
          self.showResumed(found.offset);
        }
        self.setState('uploading', found ? 'Resuming…' : 'Uploading…');
        self.upload.start();
      })
      .catch(function (err) {
        self.failed(err);
      });
  };

  /** The newest previous upload the server still has, with its offset; stale ones are forgotten. */
  function resumable(previous) {
    if (previous.length === 0) return Promise.resolve(undefined);
    var candidate = previous[0];
    return serverOffset(candidate.uploadUrl).then(function (offset) {
      if (offset !== undefined) return { upload: candidate, offset: offset };
      return window.tus.defaultOptions.urlStorage.removeUpload(candidate.urlStorageKey).then(function () {
        return resumable(previous.slice(1));
      });
    });
  }

  /** Upload-Offset of an upload (HEAD), or undefined when the server no longer has it. */
  function serverOffset(url) {
    if (!url) return Promise.resolve(undefined);
    var headers = Object.assign({ 'Tus-Resumable': '1.0.0' }, authHeaders());
    return fetch(url, { method: 'HEAD', headers: headers, cache: 'no-store' }).then(
      function (res) {
        var offset = Number(res.headers.get('Upload-Offset'));
        return res.ok && Number.isFinite(offset) ? offset : undefined;
      },
      function () {
        return undefined;
      },
    );
  }

  Entry.prototype.showResumed = function (offset) {
    var total = this.file.size;
    this.resumed.hidden = false;
    this.resumed.textContent =
      'Resuming at ' + offset + ' bytes (' + formatBytes(offset) + ', ' + percent(offset, total) + ') from an earlier upload';
    this.row.setAttribute('data-resumed-at', String(offset));
    this.progress(offset, total);
  };

  Entry.prototype.pause = function () {
    var self = this;
    if (this.state !== 'uploading' && this.state !== 'retrying') return;
    this.setState('paused', 'Pausing…');
    this.upload.abort(false).then(function () {
      if (self.state === 'paused') self.setState('paused', 'Paused at ' + formatBytes(self.sent || 0) + '.');
    });
  };

  Entry.prototype.resume = function () {
    if (this.state !== 'paused' && this.state !== 'error') return;
    this.samples = [];
    this.setState('uploading', 'Uploading…');
    this.upload.start();
  };

  Entry.prototype.progress = function (sent, total) {
    this.sent = sent;
    if (this.state === 'retrying') this.setState('uploading', 'Uploading again…');
    var now = performance.now();
    this.samples.push({ t: now, bytes: sent });
    while (this.samples.length > 2 && now - this.samples[0].t > 3000) this.samples.shift();
    var first = this.samples[0];
    var seconds = (now - first.t) / 1000;
    var rate = seconds > 0.2 ? (sent - first.bytes) / seconds : 0;
    var p = total > 0 ? (sent / total) * 100 : 100;
    this.bar.value = p;
    this.row.setAttribute('data-sent', String(sent));
    this.stats.textContent =
      formatBytes(sent) +
      ' of ' +
      formatBytes(total) +
      ' (' +
      percent(sent, total) +
      ')' +
      (rate > 0 ? ' · ' + formatBytes(rate) + '/s' : '');
  };

  Entry.prototype.finished = function () {
    var self = this;
    this.progress(this.file.size, this.file.size);
    this.setState('finished', 'Finished: stored as tus/' + this.upload.url.split('/').pop() + '.');
    this.pauseButton.disabled = true;
    this.resumeButton.disabled = true;
    var headers = authHeaders();
    fetch(this.upload.url + '/url?redirect=false', { headers: headers, cache: 'no-store' })
      .then(function (res) {
        return res.text().then(function (text) {
          if (!res.ok) throw new Error(errorText(res.status, text));
          return text;
        });
      })
      .then(function (signed) {
        var a = element('a', { href: signed, textContent: 'Download ' + self.file.name, className: 'download' });
        a.setAttribute('download', self.file.name);
        self.link.appendChild(a);
        self.row.setAttribute('data-download', signed);
      })
      .catch(function (err) {
        self.link.textContent = 'No download link: ' + err.message;
      });
  };

  Entry.prototype.failed = function (err) {
    var message = err && err.message ? err.message : String(err);
    var status = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
    if (status === 401) message = 'The server refused the token (401): check it above, then Resume.';
    else if (status === 403) message = 'The token may not upload here (403).';
    else if (status === 413) message = 'The file is larger than the server accepts (413).';
    this.setState('error', 'Stopped: ' + firstLine(message));
  };

  Entry.prototype.setState = function (state, text) {
    this.state = state;
    this.row.setAttribute('data-state', state);
    this.status.textContent = text;
    var active = state === 'uploading' || state === 'retrying';
    this.pauseButton.disabled = !active;
    this.resumeButton.disabled = !(state === 'paused' || state === 'error');
  };

  // --- helpers -------------------------------------------------------------------------------

  function element(tag, props) {
    var el = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      if (key.indexOf('-') >= 0 || key === 'role') el.setAttribute(key, props[key]);
      else el[key] = props[key];
    });
    return el;
  }

  function say(text) {
    notice.textContent = text;
  }

  function errorText(status, body) {
    try {
      var parsed = JSON.parse(body);
      if (parsed && parsed.message) return parsed.message + ' (' + status + ')';
    } catch (_) {
      // not JSON
    }
    return 'HTTP ' + status;
  }

  function firstLine(text) {
    return String(text).split('\n')[0];
  }

  function positiveInteger(text) {
    var n = Number(text);
    return text && Number.isInteger(n) && n > 0 ? n : undefined;
  }

  function percent(part, total) {
    return (total > 0 ? Math.floor((part / total) * 1000) / 10 : 100).toFixed(1) + '%';
  }

  function formatBytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + ' ' + units[i];
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (_) {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (_) {
      // private mode: the token is not kept
    }
  }
})();
