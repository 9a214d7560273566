#pragma once
// The state file of a sweep whose trials run as separate processes — several at once, maybe on
// several machines that share <state>/ (a cluster's job array). Every change is a read-modify-write
// under the sweep's state lock (<id>.state.lock, held for milliseconds): the newest file is read,
// the change applied, and the result written atomically (write_file_atomically), so a process
// changing its own trial's record never loses another process's change to another record.
// Readers need no lock: the file is only ever replaced whole.
#include <functional>

#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/sweep_trials.h"

namespace petal {

// Under the state lock: loads the state (or, when there is none yet, takes `fresh()`), applies
// `change` and saves. Returns the state as saved. Whatever `change` throws propagates, and
// nothing is saved.
SweepState update_sweep_state(const SweepFiles& files, const std::function<SweepState()>& fresh,
                              const std::function<void(SweepState&)>& change);

// The same for one trial's record, in a state that must exist. Throws PetalError when the state
// file or the trial is missing (the state was moved aside meanwhile).
SweepState update_trial_record(const SweepFiles& files, const std::string& trial_id,
                               const std::function<void(TrialRecord&)>& change);

}  // namespace petal
