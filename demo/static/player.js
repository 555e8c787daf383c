// The file page's player: shows what the <audio> or <video> element is doing, and with
// ?tour in the address takes a short tour by itself: play for a second, then jump to
// four fifths of the way through. Unless the browser already has that part of the file
// (bufferedAtJump), it asks the server for it with an HTTP Range request, which
// GridFSHandler answers with "206 Partial Content". The result lands in
// <body data-tour="..."> for scripts.
(function () {
  "use strict";
  const media = document.querySelector("audio, video");
  const status = document.getElementById("status");
  if (!media || !status) return;

  const seconds = (t) => (Number.isFinite(t) ? t.toFixed(2) + " s" : "?");
  const show = () => {
    const state = media.error ? "error " + media.error.code : media.paused ? "paused" : "playing";
    status.textContent = state + " at " + seconds(media.currentTime) + " of " + seconds(media.duration);
  };
  for (const name of ["loadedmetadata", "play", "pause", "timeupdate", "seeked", "ended", "error"]) {
    media.addEventListener(name, show);
  }
  show();

  if (!new URLSearchParams(location.search).has("tour")) return;
  const tour = { steps: [] };
  let target = null; // where the tour jumps to, once it has played a second
  const step = (text) => tour.steps.push(text + " at " + seconds(media.currentTime));
  const report = (result) => {
    document.body.dataset.tour = JSON.stringify(result);
  };
  const finish = () => {
    const { duration, currentTime } = media;
    report(Object.assign(tour, { done: true, duration, target, currentTime }));
  };

  media.addEventListener("timeupdate", () => {
    if (target === null && media.currentTime >= 1) {
      target = media.duration * 0.8;
      const { buffered } = media;
      tour.bufferedAtJump = false;
      for (let i = 0; i < buffered.length; i++) {
        if (buffered.start(i) <= target && target < buffered.end(i)) tour.bufferedAtJump = true;
      }
      step("jumping to " + seconds(target));
      media.currentTime = target;
    } else if (target !== null && media.currentTime >= target + 0.5 && !media.paused) {
      step("played on");
      media.pause();
      finish();
    }
  });
  media.addEventListener("seeked", () => step("seeked"));
  media.addEventListener("ended", () => {
    if (target !== null && !document.body.dataset.tour) finish();
  });
  media.addEventListener("error", () => report({ error: "media error " + media.error.code }));

  const start = () => {
    step("playing");
    media.play().catch((error) => report({ error: "play() failed: " + error }));
  };
  if (media.readyState >= 1) start();
  else media.addEventListener("loadedmetadata", start, { once: true });
})();
