#include "src/cli/progress.h"

#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/cli/format.h"

namespace stella::cli {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

json Event(const std::string& kind, int global_rank, json fields) {
  fields["event"] = kind;
  fields["cluster"] = global_rank / 2;
  fields["cluster_name"] = global_rank / 2 == 0 ? "onprem" : "cloud";
  fields["local_rank"] = global_rank % 2;
  fields["global_rank"] = global_rank;
  return fields;
}

json Progress(int step, double elapsed, double wan_each_way, double sps, double loss) {
  return Event("progress", 0,
               {{"step", step},
                {"total_steps", 100},
                {"samples_per_second", sps},
                {"loss", loss},
                {"wan_bytes_sent", wan_each_way},
                {"wan_bytes_received", wan_each_way},
                {"elapsed_seconds", elapsed}});
}

// A scripted run: start, progress every 5 steps, an eval, an error from a
// worker, and events from other ranks that the view must ignore.
void Feed(ProgressView& view) {
  view.OnEvent(
      "onprem/0",
      Event("start", 0,
            {{"world_size", 4}, {"device", "cpu"}, {"mode", "ddp"}, {"parameters", 1000}, {"total_steps", 100}}));
  view.OnEvent("onprem/1", Event("start", 1, {{"world_size", 4}, {"total_steps", 100}}));
  view.OnEvent("onprem/0", Progress(5, 1.0, 0.5e6, 310, 2.0));
  view.OnEvent("onprem/0", Progress(10, 2.0, 1e6, 320, 1.5));
  view.OnEvent("onprem/0", Progress(15, 3.0, 1.5e6, 325, 1.2));
  view.OnEvent("cloud/0", Event("progress", 2, {{"step", 90}, {"total_steps", 100}}));
  view.OnEvent(
      "onprem/0",
      Event("eval", 0, {{"step", 20}, {"test_accuracy", 0.7512}, {"test_loss", 0.65}, {"elapsed_seconds", 4.1}}));
  // Crosses 20% and 30% at once: one line, for 30%.
  view.OnEvent("onprem/0", Progress(35, 7.0, 3e6, 330, 0.9));
  view.OnEvent("cloud/1", Event("error", 3, {{"message", "CUDA out of memory"}}));
  // Mistyped fields are ignored rather than fatal.
  view.OnEvent("onprem/0", Event("progress", 0, {{"step", "forty"}, {"loss", "low"}}));
  view.OnEvent("onprem/0", Progress(100, 20.0, 10e6, 340, 0.4));
  view.OnEvent("onprem/0", Event("done", 0, {{"steps", 100}}));
}

TEST(ProgressViewTest, PlainOutputIsDeterministic) {
  std::ostringstream out;
  ProgressView view(out, /*tty=*/false);
  Feed(view);
  view.Finish();
  EXPECT_EQ(out.str(),
            "start: world size 4, device cpu, mode ddp, 1000 parameters, 100 steps\n"
            "progress 10% step 10/100, 320.0 samples/s, loss 1.5000, WAN 1.00 MB/s, elapsed 2.0s, "
            "ETA 18.0s\n"
            "eval step 20/100: test accuracy 75.12%, test loss 0.6500, elapsed 4.1s\n"
            "progress 30% step 35/100, 330.0 samples/s, loss 0.9000, WAN 0.75 MB/s, elapsed 7.0s, "
            "ETA 13.0s\n"
            "error from cloud/1: CUDA out of memory\n"
            "progress 100% step 100/100, 340.0 samples/s, loss 0.4000, WAN 1.08 MB/s, elapsed 20.0s, "
            "ETA 0.0s\n");
}

// A job restarted from a checkpoint: the view reports the resume (and what
// was skipped), continues its decile lines from the resumed step, reports
// rank 0's checkpoints, and estimates the ETA from the steps since the resume.
TEST(ProgressViewTest, ResumeAndCheckpointLines) {
  std::ostringstream out;
  ProgressView view(out, /*tty=*/false);
  view.OnEvent("onprem/0", Event("start", 0, {{"world_size", 4}, {"total_steps", 100}}));
  view.OnEvent("onprem/0", Event("checkpoint", 0, {{"step", 40}, {"bytes", 2048}, {"seconds", 0.0125}}));
  view.OnEvent("cloud/0", Event("checkpoint", 2, {{"step", 40}, {"bytes", 2048}, {"seconds", 0.5}}));  // not rank 0
  view.OnEvent("onprem/0", Event("start", 0, {{"world_size", 4}, {"total_steps", 100}}));
  view.OnEvent("onprem/0",
               Event("resume", 0,
                     {{"step", 40}, {"from_checkpoint", true}, {"skipped", {"/c/onprem-0/step-50.ckpt: truncated"}}}));
  view.OnEvent("onprem/0", Progress(45, 1.0, 0, 300, 0.5));  // still in the 40% decile
  view.OnEvent("onprem/0", Progress(50, 2.0, 0, 300, 0.5));
  view.OnEvent("onprem/0", Event("resume", 0, {{"step", 0}, {"from_checkpoint", false}}));
  EXPECT_EQ(out.str(),
            "start: world size 4, device ?, mode ?, 0 parameters, 100 steps\n"
            "checkpoint step 40 saved (2.0 KiB per worker, 12.5 ms)\n"
            "start: world size 4, device ?, mode ?, 0 parameters, 100 steps\n"
            "resumed from checkpoint at step 40/100\n"
            "  skipped /c/onprem-0/step-50.ckpt: truncated\n"
            "progress 50% step 50/100, 300.0 samples/s, loss 0.5000, WAN 0.00 MB/s, elapsed 2.0s, ETA 10.0s\n"
            "no checkpoint that every worker holds complete; starting at step 0\n");
}

TEST(ProgressViewTest, TerminalOutputRedrawsOneLine) {
  std::ostringstream out;
  ProgressView view(out, /*tty=*/true);
  view.OnEvent("onprem/0", Progress(10, 2.0, 1e6, 320, 1.5));
  std::string first = out.str();
  EXPECT_EQ(first.rfind("\r\033[2K", 0), 0u);
  EXPECT_THAT(first, HasSubstr("[##----------------------] 10/100 10.0%"));
  EXPECT_THAT(first, HasSubstr("320 samples/s | loss 1.500 | WAN 1.00 MB/s | ETA 18.0s"));
  EXPECT_THAT(first, Not(HasSubstr("\n")));

  view.OnEvent("onprem/0", Event("eval", 0, {{"step", 10}, {"test_accuracy", 0.8}}));
  EXPECT_THAT(out.str().substr(first.size()), HasSubstr("acc 80.0%"));
  EXPECT_THAT(out.str(), Not(HasSubstr("\n")));

  // A message line clears the live line, prints, then redraws it.
  view.OnEvent("cloud/0", Event("error", 2, {{"message", "boom"}}));
  EXPECT_THAT(out.str(), HasSubstr("\r\033[2Kerror from cloud/0: boom\n\r\033[2K[##"));

  view.Finish();
  EXPECT_THAT(out.str(), EndsWith("\n"));
  size_t size = out.str().size();
  view.Finish();
  EXPECT_EQ(out.str().size(), size);
}

TEST(ProgressViewTest, TerminalLineIsCutToTheWidth) {
  std::ostringstream out;
  ProgressView view(out, /*tty=*/true, /*columns=*/30);
  view.OnEvent("onprem/0", Progress(10, 2.0, 1e6, 320, 1.5));
  EXPECT_EQ(out.str(), "\r\033[2K[##----------------------] 10");  // 29 visible columns
}

// A gateway's link goes down and comes back: one line each (from whichever
// worker reports it), and the live line says the WAN is degraded meanwhile.
TEST(ProgressViewTest, WanLinkChangesArePrintedAndMarkTheLiveLine) {
  std::ostringstream plain;
  ProgressView view(plain, /*tty=*/false);
  view.OnEvent("cloud/0", Event("wan_link", 2,
                                {{"peer", "onprem"}, {"state", "down"}, {"reason", "no byte from the peer for 10 s"}}));
  view.OnEvent("cloud/0", Event("wan_link", 2, {{"peer", "onprem"}, {"state", "up"}, {"connects", 2}}));
  view.OnEvent("onprem/0", Event("wan_link", 0, {{"peer", "cloud"}, {"state", "left"}}));
  view.OnEvent("onprem/0", Event("wan_link", 0, {{"peer", "cloud"}, {"state", "bogus"}}));
  EXPECT_EQ(plain.str(),
            "WAN link cloud -> onprem down: no byte from the peer for 10 s; training on with the clusters reachable\n"
            "WAN link cloud -> onprem up again (connection 2)\n"
            "WAN link onprem -> cloud: the peer left the job\n");

  std::ostringstream tty;
  ProgressView live(tty, /*tty=*/true);
  live.OnEvent("onprem/0", Progress(10, 2.0, 1e6, 320, 1.5));
  live.OnEvent("cloud/0", Event("wan_link", 2, {{"peer", "onprem"}, {"state", "down"}, {"reason", "reset"}}));
  EXPECT_THAT(tty.str(), EndsWith("| WAN degraded (1 link down) | ETA 18.0s"));
  live.OnEvent("cloud/0", Event("wan_link", 2, {{"peer", "onprem"}, {"state", "up"}, {"connects", 2}}));
  EXPECT_THAT(tty.str(), EndsWith("MB/s | ETA 18.0s"));
}

TEST(FormatTest, HumanUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(12345678), "11.8 MiB");
  EXPECT_EQ(HumanBytes(3ull << 40), "3.0 TiB");
  EXPECT_EQ(HumanDuration(4.25), "4.2s");
  EXPECT_EQ(HumanDuration(75), "1m15s");
  EXPECT_EQ(HumanDuration(3725), "1h02m05s");
  EXPECT_EQ(HumanDuration(-1), "?");
}

TEST(FormatTest, EventFieldsNeverThrow) {
  json e = {{"n", 2.5}, {"i", 7}, {"f", 8.0}, {"s", "x"}, {"bad", "1"}};
  EXPECT_EQ(EventNumber(e, "n", 0), 2.5);
  EXPECT_EQ(EventNumber(e, "bad", -1), -1);
  EXPECT_EQ(EventNumber(e, "absent", -1), -1);
  EXPECT_EQ(EventInt(e, "i", 0), 7);
  EXPECT_EQ(EventInt(e, "f", 0), 8);
  EXPECT_EQ(EventInt(e, "n", -1), -1);
  EXPECT_EQ(EventString(e, "s", ""), "x");
  EXPECT_EQ(EventString(e, "i", "fallback"), "fallback");
}

}  // namespace
}  // namespace stella::cli
